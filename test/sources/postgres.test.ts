import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import pg from 'pg'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { csv, ExportError, exportStream, fileSink, jsonl, postgresSource, type Progress } from '../../src/index.js'
import { collector, listDir, tempDir } from '../helpers.js'
import { createStatements, databaseUrl, otherBackends, testPool } from '../fixtures/postgres.js'

const TYPES_TABLE = 'se_types'
const STATEMENTS = 'se_pg_statements'

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
  await pool.query(`drop table if exists ${TYPES_TABLE}`)
  await pool.query(`create table ${TYPES_TABLE} (
    id int primary key, big int8, exact numeric(38,18), flag bool, at timestamptz, local_at timestamp, day date,
    doc jsonb, bytes bytea, note text, bigs int8[], exacts numeric[], ats timestamptz[])`)
  await pool.query(`insert into ${TYPES_TABLE} values
    (1, 9223372036854775807, 123456789012.345678901234567891, true, '2026-02-01 12:34:56.123456+00',
     '2026-02-01 12:34:56.5', '2026-02-01', '{"a": [1, "two", null], "nested": {"ok": false}}', '\\x00ff10',
     'comma, "quote", line
break', '{9223372036854775807,-1}', '{0.1,12345678901234567890.123456789}', '{"2026-02-01 00:00:00+00","1999-12-31 23:59:59.999999+00"}'),
    (2, -9223372036854775808, -0.000000000000000001, false, '1970-01-01 00:00:00+00', '1970-01-01 00:00:00', '1970-01-01',
     '[]', '\\x', '', '{}', '{}', '{}'),
    (3, null, null, null, null, null, null, null, null, null, null, null, null)`)
  await createStatements(pool, STATEMENTS, 20_000)
  await pool.end()
})

const iso = (pgText: string) => pgText.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00')

describe('postgresSource', () => {
  it('exports every column type losslessly as CSV', async () => {
    const pool = testPool()
    const sink = collector()
    await exportStream({ source: postgresSource({ pool, text: `select * from ${TYPES_TABLE} order by id` }), format: csv({ nullValue: '\\N' }), sink })
    const records = parse(sink.buffer(), { columns: true }) as Array<Record<string, string>>
    const client = await pool.connect()
    await client.query(`set timezone = 'UTC'`)
    // What Postgres itself prints for each value, to compare the export with.
    const { rows: expected } = await client.query(`select * from (select id::text, big::text, exact::text, flag::text, at::text, local_at::text, day::text,
      doc::text, encode(bytes, 'base64') as bytes, note, bigs::text, exacts::text, ats::text from ${TYPES_TABLE}) t order by id::int`)
    client.release()
    expect(records).toHaveLength(3)
    const [first, second, nulls] = records
    const [e1, e2] = expected as Array<Record<string, string>>
    expect(first.big).toBe('9223372036854775807')
    expect(first.exact).toBe(e1.exact)
    expect(first.exact).toBe('123456789012.345678901234567891')
    expect(second.exact).toBe('-0.000000000000000001')
    expect(second.big).toBe(e2.big)
    expect(first.flag).toBe('true')
    expect(second.flag).toBe('false')
    expect(first.at).toBe(iso(e1.at)) // 2026-02-01T12:34:56.123456+00:00: microseconds kept
    expect(first.at).toBe('2026-02-01T12:34:56.123456+00:00')
    expect(first.local_at).toBe('2026-02-01T12:34:56.5')
    expect(first.day).toBe('2026-02-01')
    expect(JSON.parse(first.doc)).toEqual(JSON.parse(e1.doc))
    expect(first.bytes).toBe(e1.bytes)
    expect(second.bytes).toBe('')
    expect(first.note).toBe('comma, "quote", line\nbreak')
    expect(second.note).toBe('')
    expect(JSON.parse(first.bigs)).toEqual(['9223372036854775807', '-1'])
    expect(JSON.parse(first.exacts)).toEqual(['0.1', '12345678901234567890.123456789'])
    expect(JSON.parse(first.ats)).toEqual(['2026-02-01T00:00:00+00:00', '1999-12-31T23:59:59.999999+00:00'])
    for (const [key, value] of Object.entries(nulls)) if (key !== 'id') expect(value, key).toBe('\\N')
  })

  it('exports the same values as JSON Lines', async () => {
    const pool = testPool()
    const sink = collector()
    await exportStream({ source: postgresSource({ pool, text: `select * from ${TYPES_TABLE} order by id` }), format: jsonl(), sink })
    const [first, second, nulls] = sink
      .buffer()
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(first).toMatchObject({
      id: 1,
      big: '9223372036854775807',
      exact: '123456789012.345678901234567891',
      flag: true,
      doc: { a: [1, 'two', null], nested: { ok: false } },
      bytes: Buffer.from([0, 255, 16]).toString('base64'),
      bigs: ['9223372036854775807', '-1'],
      exacts: ['0.1', '12345678901234567890.123456789'],
    })
    expect(first.at).toMatch(/^2026-02-01T\d\d:34:56\.123456[+-]\d\d:\d\d$/)
    expect(new Date(first.at).toISOString()).toBe('2026-02-01T12:34:56.123Z')
    expect(second).toMatchObject({ flag: false, doc: [], note: '', bigs: [] })
    expect(Object.values(nulls).filter((v) => v === null)).toHaveLength(12)
  })

  it('passes values as parameters and streams many rows in batches', async () => {
    const pool = testPool()
    const sink = collector()
    const result = await exportStream({
      source: postgresSource({ pool, text: `select id, memo from ${STATEMENTS} where id > $1 order by id`, values: [5000], batchSize: 700 }),
      format: csv(),
      gzip: true,
      sink,
    })
    expect(result.rows).toBe(15_000)
    const records = parse(gunzipSync(sink.buffer()), { columns: true }) as Array<{ id: string }>
    expect(records.map((r) => Number(r.id))).toEqual(Array.from({ length: 15_000 }, (_, i) => 5001 + i))
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('reports exact and estimated totals for progress', async () => {
    const pool = testPool()
    for (const count of ['exact', 'estimate'] as const) {
      const reports: Progress[] = []
      await exportStream({
        source: postgresSource({ pool, text: `select * from ${STATEMENTS} where id <= $1`, values: [12_345], count }),
        format: csv(),
        sink: collector(),
        onProgress: (p) => void reports.push(p),
      })
      const last = reports.at(-1)!
      expect(last.rows).toBe(12_345)
      if (count === 'exact') expect(last).toMatchObject({ totalRows: 12_345, percent: 100 })
      else expect(last.totalRows).toBeGreaterThan(0)
    }
  })

  it('uses a given client without releasing it, inside the caller transaction', async () => {
    const client = new pg.Client({ connectionString: databaseUrl() })
    await client.connect()
    try {
      await client.query('begin')
      await client.query(`create temp table se_tx (n int) on commit drop`)
      await client.query(`insert into se_tx select generate_series(1, 2500)`)
      const sink = collector()
      const result = await exportStream({
        source: postgresSource({ client, text: 'select n from se_tx order by n', count: 'exact', batchSize: 1000 }),
        format: csv(),
        sink,
      })
      expect(result.rows).toBe(2500)
      expect(sink.buffer().toString().split('\n')[2500]).toBe('2500')
      expect((await client.query('select count(*)::int as n from se_tx')).rows[0].n).toBe(2500) // still in the transaction
      await client.query('commit')
    } finally {
      await client.end()
    }
  })

  it('opens and closes its own connection from a connectionString', async () => {
    const pool = testPool()
    // Backends of earlier tests may still be going away: only a new one would be ours.
    const before = new Set((await otherBackends(pool)).map((backend) => backend.pid))
    const result = await exportStream({
      source: postgresSource({ connectionString: databaseUrl(), text: `select * from ${STATEMENTS} limit 10` }),
      format: jsonl(),
      sink: collector(),
    })
    expect(result.rows).toBe(10)
    await expect.poll(async () => (await otherBackends(pool)).filter((backend) => !before.has(backend.pid))).toEqual([])
  })

  it('early destroy closes the cursor and releases the client; the pool stays usable', async () => {
    const pool = testPool(2)
    const source = postgresSource({ pool, text: `select * from ${STATEMENTS} order by id`, batchSize: 100 })
    let seen = 0
    for await (const _row of source) if (++seen === 250) break
    await expect.poll(() => pool.idleCount).toBe(1)
    expect(pool.totalCount).toBe(1)
    const activity = await otherBackends(pool)
    expect(activity.filter((a) => a.state !== 'idle')).toEqual([])
    expect((await pool.query('select 42 as n')).rows[0].n).toBe(42)
  })

  // The cursor is closed before the export rejects; a COPY cannot be stopped, so its connection is
  // closed and its backend ends as soon as it notices (within moments: polled).
  for (const [path, transform] of [
    ['COPY', undefined],
    ['cursor', (row: object) => row],
  ] as const) {
    it(`abort mid-export: ERR_ABORTED, client released, no partial file (${path})`, async () => {
      const pool = testPool(2)
      const dir = await tempDir()
      const controller = new AbortController()
      const error = await exportStream({
        source: postgresSource({ pool, text: `select * from ${STATEMENTS} s, generate_series(1, 20) order by id`, batchSize: 100 }),
        transform,
        format: csv(),
        gzip: true,
        sink: fileSink({ path: join(dir, 'out.csv.gz') }),
        signal: controller.signal,
        progressIntervalMs: 1,
        onProgress: (p) => {
          if (p.rows > 1000) controller.abort()
        },
      }).catch((e) => e)
      expect(error.code).toBe('ERR_ABORTED')
      expect(await listDir(dir)).toEqual([])
      expect(pool.totalCount).toBe(pool.idleCount)
      const busy = async () => (await otherBackends(pool)).filter((a) => a.state !== 'idle')
      if (path === 'cursor') expect(await busy()).toEqual([])
      else await expect.poll(busy, { timeout: 2000, interval: 20 }).toEqual([])
      expect((await pool.query('select 1 as n')).rows[0].n).toBe(1)
    })
  }

  // pg-cursor queues a read asked for before the row description and sends its Execute when the
  // description arrives, even after the cursor was closed: the server then answers "portal does not
  // exist" to a client back in the pool, and the pool emits it as 'error' (a crash without a listener).
  it('an abort just after the cursor is submitted, before its row description: the pool emits no error', async () => {
    const pool = testPool(2)
    const poolErrors: Error[] = []
    pool.on('error', (error) => void poolErrors.push(error))
    const connect = pool.connect.bind(pool)
    let controller = new AbortController()
    // Each client aborts the export right after it has sent the cursor's query (Parse, Bind, Describe).
    pool.connect = (async () => {
      const client = await connect()
      const query = client.query.bind(client) as (...args: unknown[]) => unknown
      ;(client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        const result = query(...args)
        if ((args[0] as { cursor?: unknown })?.cursor) controller.abort(new Error('stop'))
        return result
      }
      return client
    }) as typeof pool.connect
    for (let i = 0; i < 5; i++) {
      controller = new AbortController()
      const dir = await tempDir()
      const error = await exportStream({
        source: postgresSource({ pool, text: 'select i as id, md5(i::text) as note from generate_series(1, 60000) i', batchSize: 5000 }),
        format: csv(),
        sink: fileSink({ path: join(dir, 'orders.csv') }),
        split: { rows: 100 },
        signal: controller.signal,
      }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_ABORTED' })
      expect(await listDir(dir)).toEqual([])
    }
    pool.connect = connect // (pool.query calls connect with a callback, which the wrapper does not take)
    await new Promise((resolve) => setTimeout(resolve, 200)) // the server's answer to a stray Execute would be in by now
    expect(poolErrors).toEqual([])
    expect((await pool.query('select 1 as n')).rows[0].n).toBe(1)
  })

  describe('faults reject with ERR_SOURCE carrying the Postgres error code, leave nothing, keep the pool usable', () => {
    async function failingExport(pool: pg.Pool, source: ReturnType<typeof postgresSource>, during?: () => Promise<void>, transform?: (row: object) => object) {
      const dir = await tempDir()
      let triggered = false
      const error = await exportStream({
        source,
        transform,
        format: csv(),
        gzip: true,
        sink: fileSink({ path: join(dir, 'out.csv.gz') }),
        progressIntervalMs: 1,
        onProgress: (p) => {
          if (during && !triggered && p.rows > 0) {
            triggered = true
            return during()
          }
        },
      }).catch((e) => e)
      expect(error).toBeInstanceOf(ExportError)
      expect(await listDir(dir)).toEqual([])
      await expect.poll(() => pool.totalCount).toBe(pool.idleCount)
      expect((await pool.query('select 7 as n')).rows[0].n).toBe(7)
      return error as ExportError & { cause: { code?: string } }
    }

    it('a syntax error', async () => {
      const pool = testPool()
      const error = await failingExport(pool, postgresSource({ pool, text: 'selec * from nowhere' }))
      expect(error.code).toBe('ERR_SOURCE')
      expect(error.cause.code).toBe('42601')
    })

    it('a statement timeout', async () => {
      const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2, options: '-c statement_timeout=200' })
      onTestFinished(() => pool.end())
      const error = await failingExport(pool, postgresSource({ pool, text: `select id, pg_sleep(0.05) from ${STATEMENTS} order by id`, batchSize: 10 }))
      expect(error.code).toBe('ERR_SOURCE')
      expect(error.cause.code).toBe('57014')
    })

    it('a wrong column', async () => {
      const pool = testPool()
      const error = await failingExport(pool, postgresSource({ pool, text: `select nope from ${STATEMENTS}` }))
      expect(error.cause.code).toBe('42703')
    })

    // Without a transform PostgreSQL writes the CSV (COPY); with one, rows come through the cursor.
    for (const [path, transform] of [
      ['COPY', undefined],
      ['cursor', (row: object) => row],
    ] as const) {
      it(`the backend terminated mid-export (${path})`, async () => {
        const pool = testPool()
        const admin = testPool(1)
        const text = `select s.*, pg_backend_pid() as pid from ${STATEMENTS} s, generate_series(1, 50) order by id`
        const source = postgresSource({ pool, text, batchSize: 100 })
        const error = await failingExport(
          pool,
          source,
          async () => {
            await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_backend_pid() as pid%' and pid <> pg_backend_pid()`)
          },
          transform,
        )
        expect(error.code).toBe('ERR_SOURCE')
        // Which error reaches the cursor first depends on timing: the server's 57P01 message, or the
        // dead socket (a failed write, or "Connection terminated unexpectedly").
        expect(['57P01', 'EPIPE', 'ECONNRESET', undefined]).toContain(error.cause.code)
        expect(error.cause).toBeInstanceOf(Error)
      })
    }
  })

  it('validates its options before connecting', () => {
    const pool = new pg.Pool({ connectionString: databaseUrl() })
    expect(() => postgresSource({ text: 'select 1' })).toThrow('Expected `pool | client | connectionString` to be exactly one of them')
    expect(() => postgresSource({ pool, text: '' })).toThrow('Expected `text` to be a non-empty string')
    expect(() => postgresSource({ pool, text: 'select 1', batchSize: -1 })).toThrow('Expected `batchSize` to be a positive integer, got `-1` (number)')
    expect(() => postgresSource({ pool, text: 'select 1', count: 'all' as never })).toThrow('Expected `count` to be one of `exact`, `estimate`')
    expect(() => postgresSource({ pool, text: 'select 1', values: 'x' as never })).toThrow('Expected `values` to be an array')
    expect(pool.totalCount).toBe(0)
    return pool.end()
  })
})
