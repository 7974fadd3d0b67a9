// A key column that holds NULLs: `key > after AND key <= until` and `key > last` leave every NULL
// out, so key ranges (shards, planShards) and keyset pages would lose those rows without a word.
// Such a key is refused before any output, naming the column; a key that holds none is read whole.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// Shards run on worker threads: the built package, as the sharded suites use it.
import { csv, exportStream, fileSink, planShards, postgresKeysetSource, postgresShardedSource } from '../../dist/index.js'
import { databaseUrl } from '../fixtures/postgres.js'

const TABLE = 'se_null_keys'
const PAIRS = 'se_null_key_pairs'
const ROWS = 50_000
const NULLS = 500
const cli = new URL('../../dist/cli.js', import.meta.url).pathname
let pool: pg.Pool

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
  await pool.query(`drop table if exists ${TABLE}, ${PAIRS}`)
  // `ext`: unique and indexed, but nullable: 50,000 keys and 500 NULLs. `id`: the primary key.
  await pool.query(
    `create table ${TABLE} as select i as id, case when i <= ${ROWS} then i * 3 end as ext, md5(i::text) as v from generate_series(1, ${ROWS + NULLS}) i`,
  )
  await pool.query(`alter table ${TABLE} add primary key (id)`)
  await pool.query(`create unique index on ${TABLE} (ext)`)
  await pool.query(`create table ${PAIRS} as select a as account, case when s > 1 then s end as seq from generate_series(1, 20) a, generate_series(1, 50) s`)
  await pool.query(`create unique index on ${PAIRS} (account, seq)`)
})
afterAll(() => pool.end())

const refusal = (column: string) => ({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining(`"${column}"`) })

describe('a key column that holds NULLs', () => {
  it('planShards refuses it, naming the column', async () => {
    await expect(planShards({ pool, table: TABLE, key: 'ext', shards: 4 })).rejects.toMatchObject(refusal('ext'))
    await expect(planShards({ pool, table: PAIRS, key: ['account', 'seq'], shards: 4 })).rejects.toMatchObject(refusal('seq'))
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('keyset pages refuse it before the first row, from the start, from a checkpoint and within a range', async () => {
    for (const options of [{}, { after: 30 }, { after: 30, until: 3000 }]) {
      const rows: unknown[] = []
      const source = postgresKeysetSource({ pool, table: TABLE, key: 'ext', batchSize: 1000, ...options })
      const error = await (async () => {
        for await (const row of source) rows.push(row)
      })().catch((e) => e)
      expect(error).toMatchObject(refusal('ext'))
      expect(rows).toEqual([])
    }
    const select = postgresKeysetSource({ pool, select: `select account, seq from ${PAIRS}`, key: ['account', 'seq'] })
    await expect(select.toArray()).rejects.toMatchObject(refusal('seq'))
  })

  it('a sharded export refuses it and writes nothing; so does the CLI (exit 2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'se-null-keys-'))
    const path = join(dir, 'out.csv')
    const error = await exportStream({
      source: postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, key: 'ext', shards: 4 }),
      format: csv(),
      sink: fileSink({ path }),
    }).catch((e) => e)
    expect(error).toMatchObject(refusal('ext'))
    expect(existsSync(path)).toBe(false)
    const run = await promisify(execFile)(process.execPath, [
      cli,
      '--from',
      databaseUrl(),
      '--table',
      TABLE,
      '--key',
      'ext',
      '--shards',
      '3',
      '--to',
      path,
    ]).catch((e) => e)
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('"ext"')
    expect(existsSync(path)).toBe(false)
  }, 60_000)

  it('a nullable key that holds no NULLs (the NULL rows filtered out) is read whole, as one cursor reads it', async () => {
    const select = `select id, ext, v from ${TABLE} where ext is not null`
    const { rows: expected } = await pool.query(`${select} order by ext`)
    const keyset = await postgresKeysetSource({ pool, select, key: 'ext', batchSize: 7000 }).toArray()
    expect(keyset).toEqual(expected)
    const ranges = await planShards({ pool, table: TABLE, key: 'id', shards: 3 }) // a NOT NULL key
    expect(ranges).toHaveLength(3)
    const dir = mkdtempSync(join(tmpdir(), 'se-null-keys-'))
    const result = await exportStream({
      source: postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, select, key: 'ext', shards: 3 }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'out.csv') }),
    })
    expect(result.rows).toBe(ROWS)
  }, 60_000)
})
