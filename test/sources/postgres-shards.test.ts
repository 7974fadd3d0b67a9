import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { ExportError, planShards, postgresKeysetSource, type ShardRange } from '../../src/index.js'
import { databaseUrl, testPool } from '../fixtures/postgres.js'

const EVEN = 'se_shards_even'
const SKEWED = 'se_shards_skewed'
const PAIRS = 'se_shards_pairs'

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await pool.query(`drop table if exists ${EVEN}, ${SKEWED}, ${PAIRS}`)
  // 60,000 ids with gaps (every 7th missing).
  await pool.query(`create table ${EVEN} as select i::bigint as id, md5(i::text) as v from generate_series(1, 70000) i where i % 7 <> 0`)
  await pool.query(`alter table ${EVEN} add primary key (id)`)
  // 90% of the rows in the first 10% of the key space; ~2,000 blocks, so that the plan samples them.
  await pool.query(
    `create table ${SKEWED} as select i::bigint as id from generate_series(1, 405000) i union all select 405000 + i * 81 from generate_series(1, 45000) i`,
  )
  await pool.query(`alter table ${SKEWED} add primary key (id)`)
  // A composite key with text: 40 accounts x 500 entries.
  await pool.query(
    `create table ${PAIRS} as select 'acct-' || lpad(a::text, 3, '0') as account, s as seq from generate_series(1, 40) a, generate_series(1, 500) s`,
  )
  await pool.query(`alter table ${PAIRS} add primary key (account, seq)`)
  await pool.end()
})

/** The keys of each range, read with the keyset source as a shard reads them. */
async function keysOf(pool: pg.Pool, table: string, key: string | string[], ranges: ShardRange[]): Promise<unknown[][]> {
  return Promise.all(
    ranges.map(async ({ after, until }) => {
      const rows = await postgresKeysetSource({ pool, table, key, after, until, batchSize: 3000 }).toArray()
      return rows.map((row: Record<string, unknown>) => (Array.isArray(key) ? key.map((k) => row[k]) : row[key]))
    }),
  )
}

const spread = (counts: number[]) => Math.max(...counts) / Math.min(...counts)

describe('planShards', () => {
  it('splits a table into contiguous key ranges: every row in exactly one, in key order, of similar sizes', async () => {
    const pool = testPool()
    const ranges = await planShards({ pool, table: EVEN, shards: 8 })
    expect(ranges).toHaveLength(8)
    expect(ranges[0]!.after).toBeUndefined()
    expect(ranges[7]!.until).toBeUndefined()
    ranges.slice(1).forEach((range, i) => expect(range.after).toEqual(ranges[i]!.until)) // edge to edge
    const shards = await keysOf(pool, EVEN, 'id', ranges)
    const expected = (await pool.query(`select id from ${EVEN} order by id`)).rows.map((row: { id: string }) => row.id)
    expect(shards.flat()).toEqual(expected)
    expect(spread(shards.map((keys) => keys.length))).toBeLessThan(1.5)
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('skewed keys (90% of the rows in 10% of the key space) still give ranges within 2x of each other, from a sample', async () => {
    const pool = testPool()
    const { rows } = await pool.query(`select pg_relation_size('${SKEWED}') / 8192 as blocks`)
    expect(Number(rows[0].blocks)).toBeGreaterThan(1_500) // more than the 1,000 blocks sampled
    const ranges = await planShards({ pool, table: SKEWED, shards: 8, sampleRows: 5_000 })
    const shards = await keysOf(pool, SKEWED, 'id', ranges)
    expect(shards.flat()).toHaveLength(450_000)
    expect(new Set(shards.flat()).size).toBe(450_000)
    expect(spread(shards.map((keys) => keys.length))).toBeLessThan(2)
  })

  it('splits composite and text keys; fewer ranges than asked when there are fewer keys', async () => {
    const pool = testPool()
    const key = ['account', 'seq']
    const ranges = await planShards({ pool, table: PAIRS, key, shards: 5 })
    expect(ranges).toHaveLength(5)
    const shards = await keysOf(pool, PAIRS, key, ranges)
    const expected = (await pool.query(`select account, seq from ${PAIRS} order by account, seq`)).rows.map((row: { account: string; seq: number }) => [
      row.account,
      row.seq,
    ])
    expect(shards.flat()).toEqual(expected)
    expect(spread(shards.map((keys) => keys.length))).toBeLessThan(1.5)

    await pool.query('drop table if exists se_shards_tiny; create table se_shards_tiny (id int primary key); insert into se_shards_tiny values (1), (2), (3)')
    const tiny = await planShards({ pool, table: 'se_shards_tiny', shards: 8 })
    expect((await keysOf(pool, 'se_shards_tiny', 'id', tiny)).flat()).toEqual([1, 2, 3])
    expect(tiny.length).toBeLessThanOrEqual(3)
  })

  it('refuses bad options before connecting; a missing table is ERR_SOURCE', async () => {
    const pool = testPool()
    await expect(planShards({ pool, table: EVEN, shards: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
    await expect(planShards({ pool, table: EVEN, key: [], shards: 2 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
    const missing = planShards({ pool, table: 'se_no_such_table', shards: 2 })
    await expect(missing).rejects.toThrow(ExportError)
    await expect(missing).rejects.toMatchObject({ code: 'ERR_SOURCE' })
    expect(pool.totalCount).toBe(pool.idleCount)
  })
})
