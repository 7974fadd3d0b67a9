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
    case 0: return `Card payment ${MERCHANTS[h % 7]} ref ${ref}`
    case 1: return `Transfer, monthly rent ${ref}`
    case 2: return `Refund "duplicate charge" ${ref}`
    case 3: return `Invoice ${ref}\nsecond line`
    case 4: return `=HYPERLINK("http://x/${ref}")`
    case 5: return ''
    default: return `${MERCHANTS[h % 7]} ${ref} ${(h >>> 8) % 9999}`
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
