// Deterministic synthetic monthly-statement rows, shared by the demo, the benchmarks and the tests.
// Values vary like real data (ids, references, amounts), so gzip works as hard as on a real export.
const FIRST = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Radia', 'Tim', 'Zoë', 'Łukasz']
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', "O'Brien", 'Perlman', 'Berners-Lee', 'Nakamura', 'Müller']
const DOMAINS = ['example.com', 'mail.example.org', 'corp.example.net', 'example.co.uk']
const CURRENCIES = ['EUR', 'USD', 'GBP', 'JPY', 'CHF']
const MERCHANTS = ['ACME Corp', 'Café ☕ Zürich', 'Books & More', 'Grocer, Inc.', 'Fuel Stop 24', 'Online Shop', 'City Transit']
const BASE = Date.UTC(2026, 1, 1)

// splitmix32: a cheap, well-mixed hash of the row number.
function mix(x) {
  x = (x + 0x9e3779b9) | 0
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

function memo(i, h) {
  const ref = (h % 1_000_000).toString(36).toUpperCase()
  switch (i % 8) {
    case 0:
      return `Card payment ${MERCHANTS[h % 7]} ref ${ref}`
    case 1:
      return `Transfer, monthly rent ${ref}`
    case 2:
      return `Refund "duplicate charge" ${ref}`
    case 3:
      return `Invoice ${ref}\nsecond line`
    case 4:
      return `=HYPERLINK("http://x/${ref}")`
    case 5:
      return ''
    default:
      return `${MERCHANTS[h % 7]} ${ref} ${(h >>> 8) % 9999}`
  }
}

/** Row i of the synthetic statements table: 7 columns, ~126 bytes of CSV. */
export function statementRow(i) {
  const h = mix(i)
  const h2 = mix(h)
  const first = FIRST[h % 12]
  const last = LAST[h2 % 12]
  const cents = (h2 % 2_000_000) - 500_000
  const abs = Math.abs(cents)
  return {
    id: i + 1,
    user_name: `${first} ${last}`,
    email: `${first.toLowerCase()}.${last.toLowerCase().replace(/[^a-z]/g, '')}${h % 10_000}@${DOMAINS[h2 % 4]}`,
    currency: CURRENCIES[h % 5],
    amount: `${cents < 0 ? '-' : ''}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`,
    posted_at: new Date(BASE + i * 2_000 + (h % 1000)),
    memo: memo(i, h2),
  }
}

/** A generator of `count` statement rows. */
export function* statements(count) {
  for (let i = 0; i < count; i++) yield statementRow(i)
}

/** SQL producing `count` statement rows (7 columns, memo text with CSV specials and NULLs), from $1. */
export const STATEMENTS_SQL = `
  select i::bigint as id, 'User ' || i as user_name, 'user' || i || '@example.com' as email,
         (array['EUR','USD','GBP'])[1 + i % 3]::char(3) as currency,
         round(((i * 7919) % 2000000 - 500000) / 100.0, 2)::numeric(14,2) as amount,
         timestamptz '2026-02-01 00:00:00+00' + i * interval '2 seconds' + (i % 1000) * interval '1 microsecond' as posted_at,
         case i % 5 when 0 then 'Card payment, ref ' || i when 1 then 'Refund "dup" ' || i
                    when 2 then e'two\\nlines ' || i when 3 then null else 'Café ☕ ' || i end as memo
  from generate_series(1, $1::bigint) as i`

/** (Re)creates a statements table with `count` rows, for the tests, benchmarks and recipes. */
export async function createStatementsTable(pool, table, count) {
  await pool.query(`drop table if exists ${table}`)
  await pool.query(`create table ${table} (
    id bigint primary key, user_name text not null, email text not null, currency char(3) not null,
    amount numeric(14,2) not null, posted_at timestamptz not null, memo text)`)
  await pool.query(`insert into ${table} ${STATEMENTS_SQL}`, [count])
  await pool.query(`analyze ${table}`)
}
