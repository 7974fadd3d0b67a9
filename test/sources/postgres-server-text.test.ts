// postgresSource + csv() or jsonl() without a transform: PostgreSQL writes the text (COPY), and the bytes must
// be exactly those of the row path (the same export with a transform that returns each row as it
// is), for every type of docs/postgres.md and every CSV option COPY can express; elsewhere the row
// path runs, and says why.
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { csv, type CsvOptions, exportStream, jsonl, postgresSource, type Formatter, type Progress } from '../../src/index.js'
import { createStatements, databaseUrl, otherBackends, testPool } from '../fixtures/postgres.js'
import { collector, expectSameBytes, formatRows } from '../helpers.js'

const TABLE = 'se_server_csv_types'
const STATEMENTS = 'se_server_csv_statements'

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.query(`create table ${TABLE} (
    id int primary key, small int2, big int8, exact numeric, fixed numeric(38,18), oid_ oid, flag bool,
    at timestamptz, local_at timestamp, day date, clock time, clock_tz timetz, span interval,
    bytes bytea, note text, short varchar(20), padded char(6), tag "char", name_ name, uid uuid)`)
  await pool.query(`insert into ${TABLE} values
    (1, 32767, 9223372036854775807, 123456789012345678901234567890.123456789012345678901234567890, -0.000000000000000001, 4294967295, true,
     '2026-02-01 12:34:56.123456+00', '2026-02-01 12:34:56.5', '2026-02-01', '23:59:59.999999', '12:00:00+05:30', '1 year 2 mons -3 days 04:05:06.7',
     '\\x00ff10', e'comma, "quote", line\\nbreak\\r\\nand CR\\r', 'Zoë ☕ 𝄞', 'ab', 'x', 'pg_name', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
    (2, -32768, -9223372036854775808, 'NaN', 0, 0, false,
     'infinity', '-infinity', 'infinity', '00:00', '00:00:00-12', '-1 days',
     '\\x', '', '', '', ' ', '', '00000000-0000-0000-0000-000000000000'),
    (3, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null),
    (4, 0, 0, 'Infinity', 1, 1, true,
     '-infinity', '0044-03-15 10:00:00 BC', '0044-03-15 BC', '12:00', '23:59:59+14', '0',
     decode(repeat('ab', 100), 'hex'), '=HYPERLINK("x")', '+1', '-2', '@', e'\\tname', null),
    (5, 1, 1, '-Infinity', 2, 2, false,
     '10000-01-01 00:00:00+00', '1900-01-01 00:00:00', '5874897-12-31', '00:00:01', '00:00:00+00', '00:00:00.000001',
     '\\x2b2f', e'\\rstarts with CR', '\\.', '"', '"', 'a,b', null),
    (6, 2, 2, '0.1', 3, 3, true,
     '1800-01-01 00:00:00+00', '2000-02-29 00:00:00', '2000-02-29', '01:02:03', '01:02:03-03:30', '1 day',
     '\\x0a0d22', ';semi;colon', e'tab\\tinside', 'q''uote', 'z', 'n', null),
    (7, 3, 3, '1e-20', 4, 4, false,
     '2026-11-23 23:59:59.999999+00', '2026-11-23 00:00:00.000001', '2026-11-23', '24:00', '00:00:00+00', '-1 year',
     '\\x', chr(1) || chr(8) || chr(9) || chr(12) || chr(27) || chr(31) || '\\' || chr(127) || chr(8232) || '/"', '{"a":1}', 'é', 'ü', '__proto__', null)`)
  await createStatements(pool, STATEMENTS, 50_000)
  await pool.end()
})

type Source = ReturnType<typeof postgresSource>

/** The export as PostgreSQL writes it and as the row path writes it, with why the first went as it did. */
async function bothPaths(pool: pg.Pool, text: string, options: CsvOptions | (() => Formatter) = {}, values?: unknown[]) {
  const format = typeof options === 'function' ? options : () => csv(options)
  const server = collector()
  const source = postgresSource({ pool, text, values }) as Source
  const result = await exportStream({ source, format: format(), sink: server })
  const rows = collector()
  await exportStream({ source: postgresSource({ pool, text, values }), transform: (row) => row, format: format(), sink: rows })
  return { server: server.buffer(), rows: rows.buffer(), reason: source.rowPathReason, result }
}

const OPTIONS: Array<[string, CsvOptions]> = [
  ['default', {}],
  ['excel (CRLF, BOM, formulas escaped)', { excel: true }],
  ['semicolon, single quote, no header', { delimiter: ';', quote: "'", header: false }],
  ['tab delimiter, hex bytes', { delimiter: '\t', binary: 'hex' }],
]

describe('postgresSource + csv(): PostgreSQL writes the CSV', () => {
  for (const [name, options] of OPTIONS) {
    it(`every type, byte for byte the row path's: ${name}`, async () => {
      const pool = testPool(1)
      const { server, rows, reason, result } = await bothPaths(pool, `select * from ${TABLE} order by id`, options)
      expect(reason).toBeUndefined() // COPY wrote it
      expect(result.rows).toBe(7)
      expectSameBytes(server, rows)
    })
  }

  for (const binary of ['base64', 'hex'] as const) {
    it(`JSON Lines: every type, byte for byte the row path's (${binary} bytes), and a single column`, async () => {
      const pool = testPool(1)
      const { server, rows, reason, result } = await bothPaths(pool, `select * from ${TABLE} order by id`, () => jsonl({ binary }))
      expect(reason).toBeUndefined()
      expect(result.rows).toBe(7)
      expect(server.toString().split('\n')).toHaveLength(8)
      expectSameBytes(server, rows)
      const single = await bothPaths(pool, `select note from ${TABLE} order by id`, () => jsonl({ binary }))
      expect(single.reason).toBeUndefined()
      expectSameBytes(single.server, single.rows)
    })
  }

  it('in a session time zone with offsets in minutes and seconds (Asia/Kolkata, LMT before 1900)', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1, options: '-c TimeZone=Asia/Kolkata' })
    try {
      const { server, rows, reason } = await bothPaths(pool, `select id, at, local_at from ${TABLE} order by id`)
      expect(reason).toBeUndefined()
      expect(server.toString()).toContain('1800-01-01T05:53:28+05:53:28')
      expectSameBytes(server, rows)
    } finally {
      await pool.end()
    }
  })

  it('statement rows with parameters, a join with a repeated column name, and zero rows', async () => {
    const pool = testPool(1)
    const query = `select s.*, t.id, t.note from ${STATEMENTS} s left join ${TABLE} t on t.id = s.id where s.id > $1 and s.memo is distinct from $2 order by s.id`
    const join = await bothPaths(pool, query, {}, [10, 'never'])
    expect(join.reason).toBeUndefined()
    expect(join.server.toString().split('\n', 1)[0]).toBe('id,user_name,email,currency,amount,posted_at,memo,id_2,note')
    expect(join.result.rows).toBe(50_000 - 10)
    expectSameBytes(join.server, join.rows)
    // Rows (and CRLF records, and COPY's binary framing) cut across COPY's chunks.
    for (const format of [() => csv({ excel: true }), () => jsonl()]) {
      const other = await bothPaths(pool, query, format, [10, 'never'])
      expect(other.reason).toBeUndefined()
      expectSameBytes(other.server, other.rows)
    }
    const none = await bothPaths(pool, `select * from ${STATEMENTS} where id < 0`, { excel: true })
    expect(none.reason).toBeUndefined()
    expect(none.server.toString()).toBe('\ufeffid,user_name,email,currency,amount,posted_at,memo\r\n')
    expectSameBytes(none.server, none.rows)
  })

  it('where COPY cannot write the same bytes, the row path does, and says why', async () => {
    const pool = testPool(1)
    const cases: Array<[string, CsvOptions, RegExp]> = [
      [`select id, note::json as doc from ${TABLE} where false`, {}, /column "doc" of type oid 114/],
      [`select id, 1.5::float8 as ratio from ${TABLE}`, {}, /column "ratio" of type oid 701/],
      [`select note from ${TABLE}`, {}, /a single column/],
      [`select id, note from ${TABLE}`, { nullValue: '\\N' }, /nullValue/],
      [`select id, note from ${TABLE}`, { delimiter: '::' }, /delimiter or quote/],
      [`select id, note from ${TABLE}`, { eol: '\r' }, /record delimiter/],
      [`select id, note from ${TABLE};`, {}, /cannot be described as a subquery/],
    ]
    for (const [text, options, why] of cases) {
      const { server, rows, reason } = await bothPaths(pool, text, options)
      expect(reason).toMatch(why)
      expectSameBytes(server, rows)
    }
    const json = await bothPaths(pool, `select id, short::json as doc, short::jsonb as docb from ${TABLE} where id = 7`, () => jsonl())
    expect(json.reason).toMatch(/column "doc" of type oid 114/) // the row path re-encodes JSON (spacing, numbers)
    expectSameBytes(json.server, json.rows)
    // Columns chosen or renamed by the format, and a transform, are the row path's by design.
    const chosen = postgresSource({ pool, text: `select id, note from ${TABLE}` }) as Source
    await exportStream({ source: chosen, format: csv({ columns: ['note'] }), sink: collector() })
    expect(chosen.rowPathReason).toBe('no encoding asked for')
  })

  it('under another DateStyle the row path writes timestamps', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1, options: '-c DateStyle=SQL,DMY' })
    try {
      const { server, rows, reason } = await bothPaths(pool, `select id, at from ${TABLE} order by id`)
      expect(reason).toBe('DateStyle SQL, DMY')
      expectSameBytes(server, rows)
    } finally {
      await pool.end()
    }
  })

  it('reports rows while COPY streams, holds a few chunks behind a slow sink, and the count at the end is the command tag', async () => {
    const pool = testPool(1)
    const reports: Progress[] = []
    const source = postgresSource({ pool, text: `select * from ${STATEMENTS} order by id`, count: 'exact' }) as Source
    const sink = collector(1) // 1 ms a chunk: the export takes a while
    let buffered = 0 // COPY's chunks waiting in the source: a few, whatever the sink's pace
    const watch = setInterval(() => (buffered = Math.max(buffered, source.readableLength)), 1)
    const result = await exportStream({ source, format: csv(), sink, progressIntervalMs: 20, onProgress: (p) => void reports.push(p) })
    clearInterval(watch)
    expect(buffered).toBeLessThanOrEqual(4)
    expect(source.rowPathReason).toBeUndefined()
    expect(result.rows).toBe(50_000)
    expect(reports.some((p) => p.rows > 0 && p.rows < 50_000)).toBe(true)
    expect(reports.at(-1)).toMatchObject({ rows: 50_000, totalRows: 50_000, percent: 100 })
    expect(sink.lines).toBeGreaterThan(50_000) // memos with line breaks: more lines than rows
  })

  it('an abort mid-COPY: ERR_ABORTED, and the connection it ran on is closed, not reused', async () => {
    const pool = testPool(2)
    // The backends already there (an earlier test's may still be closing): none may be added.
    const before = new Set((await otherBackends(pool)).map((backend) => backend.pid))
    const controller = new AbortController()
    const source = postgresSource({ pool, text: `select * from ${STATEMENTS} a, generate_series(1, 20) order by a.id` }) as Source
    let pid: number | undefined
    const error = await exportStream({
      source,
      format: csv(),
      sink: collector(1),
      signal: controller.signal,
      progressIntervalMs: 10,
      onProgress: (p) => {
        pid ??= (source as unknown as { connection?: { client: { processID: number } } }).connection?.client.processID
        if (p.rows > 10_000) controller.abort()
      },
    }).catch((e: unknown) => e)
    expect(source.rowPathReason).toBeUndefined()
    expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    expect(pid).toBeGreaterThan(0)
    // Discarded, not back in the pool mid-COPY: its backend is gone; the pool still works.
    await expect
      .poll(async () => (await pool.query('select count(*)::int as n from pg_stat_activity where pid = $1', [pid])).rows[0].n, { timeout: 5000 })
      .toBe(0)
    await expect.poll(async () => (await otherBackends(pool)).filter((backend) => !before.has(backend.pid)), { timeout: 5000 }).toEqual([])
  })

  it('a row shaped like encoded rows is a row: only the brand marks them', async () => {
    const row = { encodedRows: 1, bytes: Buffer.from('x') }
    expect(await formatRows(csv(), [row])).toBe('encodedRows,bytes\n1,eA==\n')
    expect(await formatRows(jsonl(), [row])).toBe('{"encodedRows":1,"bytes":"eA=="}\n')
  })
})
