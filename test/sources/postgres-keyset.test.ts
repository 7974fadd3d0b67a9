import { join } from 'node:path'
import { parse } from 'csv-parse/sync'
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { csv, exportStream, fileSink, postgresKeysetSource, type Progress } from '../../src/index.js'
import { createStatements, databaseUrl, testPool } from '../fixtures/postgres.js'
import { collector, listDir, tempDir } from '../helpers.js'

const STATEMENTS = 'se_keyset_statements'
const PAIRS = 'se_keyset_pairs'
const ROWS = 10_000

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await createStatements(pool, STATEMENTS, ROWS)
  await pool.query(`drop table if exists ${PAIRS}`)
  await pool.query(`create table ${PAIRS} ("account id" int, seq int, note text, primary key ("account id", seq))`)
  await pool.query(`insert into ${PAIRS} select a, s, a || '-' || s from generate_series(1, 30) a, generate_series(1, 50) s`)
  await pool.end()
})

const ids = (text: string) => (parse(text, { columns: true }) as Array<{ id: string }>).map((r) => Number(r.id))

describe('postgresKeysetSource', () => {
  it('pages through a table in key order', async () => {
    const pool = testPool()
    const sink = collector()
    const result = await exportStream({ source: postgresKeysetSource({ pool, table: STATEMENTS, batchSize: 777 }), format: csv(), sink })
    expect(result.rows).toBe(ROWS)
    expect(ids(sink.buffer().toString())).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1))
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('describes its columns from the first page (typed formats read them): int8 and numeric as exact numbers, timestamptz as UTC timestamps', async () => {
    const pool = testPool()
    const source = postgresKeysetSource({ pool, table: STATEMENTS, batchSize: 500 })
    expect(source.columnTypes?.()).toBeUndefined() // nothing read yet
    await exportStream({ source, format: csv({ excel: true }), sink: collector() })
    expect(source.columnTypes?.()?.map((c) => [c.name, c.type])).toEqual([
      ['id', 'INT64'],
      ['user_name', 'STRING'],
      ['email', 'STRING'],
      ['currency', 'STRING'],
      ['amount', 'DECIMAL'],
      ['posted_at', 'TIMESTAMP'],
      ['memo', 'STRING'],
    ])
  })

  it('resumes from the checkpoint of a stopped export with exactly the remaining rows', async () => {
    const pool = testPool()
    const first = postgresKeysetSource({ pool, table: STATEMENTS, batchSize: 500 })
    const seen: number[] = []
    for await (const row of first) {
      seen.push(Number((row as { id: string }).id))
      if (seen.length === 3_333) break // a crash mid-page, with rows still buffered
    }
    expect(first.checkpoint).toBe('3333')

    const sink = collector()
    await exportStream({ source: postgresKeysetSource({ pool, table: STATEMENTS, batchSize: 500, after: first.checkpoint }), format: csv(), sink })
    const rest = ids(sink.buffer().toString())
    expect(rest[0]).toBe(3334)
    const all = [...seen, ...rest]
    expect(all).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1)) // none twice, none missing
    await expect.poll(() => pool.totalCount).toBe(pool.idleCount)
  })

  it('checkpoint follows what the reader took, not what was fetched', async () => {
    const pool = testPool()
    const source = postgresKeysetSource({ pool, table: STATEMENTS, batchSize: 100 })
    expect(source.checkpoint).toBeUndefined()
    const iterator = source[Symbol.asyncIterator]()
    await iterator.next()
    await iterator.next()
    expect(source.checkpoint).toBe('2')
    expect(source.readableLength).toBeGreaterThan(0) // the page was fetched ahead
    await iterator.return!()
  })

  it('works with a composite key and quoted identifiers', async () => {
    const pool = testPool()
    const key = ['account id', 'seq']
    const first = postgresKeysetSource({ pool, table: PAIRS, key, batchSize: 64 })
    const seen: string[] = []
    for await (const row of first) {
      seen.push((row as { note: string }).note)
      if (seen.length === 777) break
    }
    expect(first.checkpoint).toEqual([16, 27])
    const rest = await postgresKeysetSource({ pool, table: PAIRS, key, batchSize: 64, after: first.checkpoint }).toArray()
    const expected = Array.from({ length: 30 * 50 }, (_, i) => `${Math.floor(i / 50) + 1}-${(i % 50) + 1}`)
    expect([...seen, ...rest.map((r) => r.note)]).toEqual(expected)
  })

  it('pages through a select with parameters and reports the count', async () => {
    const pool = testPool()
    const reports: Progress[] = []
    const sink = collector()
    await exportStream({
      source: postgresKeysetSource({ pool, select: `select id, amount from ${STATEMENTS} where id % $1 = 0`, values: [7], batchSize: 100, count: 'exact' }),
      format: csv(),
      sink,
      onProgress: (p) => void reports.push(p),
    })
    const got = ids(sink.buffer().toString())
    expect(got).toEqual(Array.from({ length: Math.floor(ROWS / 7) }, (_, i) => (i + 1) * 7))
    expect(reports.at(-1)).toMatchObject({ rows: got.length, totalRows: got.length, percent: 100 })
  })

  it('a wrong key column rejects with ERR_SOURCE (42703), leaves nothing, keeps the pool usable', async () => {
    const pool = testPool()
    const dir = await tempDir()
    const error = await exportStream({
      source: postgresKeysetSource({ pool, table: STATEMENTS, key: 'nope' }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'out.csv') }),
    }).catch((e) => e)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.cause.code).toBe('42703')
    expect(await listDir(dir)).toEqual([])
    await expect.poll(() => pool.totalCount).toBe(pool.idleCount)
    expect((await pool.query('select 1 as n')).rows[0].n).toBe(1)
  })

  it('a table name cannot inject SQL', async () => {
    const pool = testPool()
    const error = await postgresKeysetSource({ pool, table: `${STATEMENTS}; drop table ${STATEMENTS}` })
      .toArray()
      .catch((e) => e)
    expect(error.cause.code).toBe('42P01') // no such table: the name was quoted as one identifier
    expect((await pool.query(`select count(*)::int as n from ${STATEMENTS}`)).rows[0].n).toBe(ROWS)
  })

  it('validates its options', () => {
    const pool = new pg.Pool({ connectionString: databaseUrl() })
    expect(() => postgresKeysetSource({ pool })).toThrow('Expected `table | select` to be exactly one of them')
    expect(() => postgresKeysetSource({ pool, table: 't', key: [] })).toThrow('Expected `key` to be a column name or a non-empty array of them')
    expect(() => postgresKeysetSource({ pool, table: 't', key: ['a', 'b'], after: 5 })).toThrow(
      'Expected `after` to be an array of 2 key values, got `5` (number)',
    )
    return pool.end()
  })
})

describe('postgresKeysetSource: aborts and checkpoints', () => {
  it('an export waiting for a connection from a busy pool can be aborted, and the connection is given back later', async () => {
    const pool = testPool(1)
    const held = await pool.connect() // the only connection, busy elsewhere
    const controller = new AbortController()
    const sink = collector()
    const started = Date.now()
    setTimeout(() => controller.abort(new Error('user cancelled')), 100)
    const error = await exportStream({ source: postgresKeysetSource({ pool, table: STATEMENTS }), format: csv(), sink, signal: controller.signal }).catch(
      (e) => e,
    )
    expect(error.code).toBe('ERR_ABORTED')
    expect(Date.now() - started).toBeLessThan(2_000)
    held.release()
    // The connection the aborted export was waiting for is handed back as soon as it arrives.
    await expect.poll(() => pool.idleCount).toBe(1)
    expect(pool.waitingCount).toBe(0)
  })

  it('result.checkpoint is the key of the last row in the committed output; resuming from it exports exactly the rest', async () => {
    const pool = testPool()
    const first = collector()
    const done = await exportStream({
      source: postgresKeysetSource({ pool, select: `select * from ${STATEMENTS} where id <= 1234`, batchSize: 500 }),
      format: csv(),
      sink: first,
    })
    expect(done.checkpoint).toBe('1234')
    const rest = collector()
    const next = await exportStream({
      source: postgresKeysetSource({ pool, table: STATEMENTS, batchSize: 500, after: done.checkpoint }),
      format: csv(),
      sink: rest,
    })
    expect([...ids(first.buffer().toString()), ...ids(rest.buffer().toString())]).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1))
    expect(next.checkpoint).toBe(String(ROWS))
  })
})
