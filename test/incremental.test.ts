import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'csv-parse/sync'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  csv,
  ExportError,
  fileSink,
  fileWatermarkStore,
  incrementalExport,
  mongoIncrementalSource,
  postgresIncrementalSource,
  postgresWatermarkStore,
  redisWatermarkStore,
  type IncrementalWatermark,
  type MongoIncrementalWatermark,
  type WatermarkStore,
} from '../src/index.js'
import { databaseUrl, testPool } from './fixtures/postgres.js'
import { startMongo } from './fixtures/mongo.js'
import { collector, listDir, tempDir } from './helpers.js'

const TABLE = 'se_incremental_orders'
const redisUp = process.env.REDIS_AVAILABLE === '1'
let setup: pg.Pool

beforeAll(() => {
  setup = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
})
afterAll(() => setup?.end())

/** A fresh orders table of `rows` rows, version 1 each; `updated_at` set by the writing transaction. */
async function createOrders(table: string, rows: number): Promise<void> {
  await setup.query(`drop table if exists ${table}`)
  await setup.query(`create table ${table} (id int primary key, status text not null, v int not null, updated_at timestamptz not null default now())`)
  await setup.query(`insert into ${table} (id, status, v) select i, 'new', 1 from generate_series(1, $1) i`, [rows])
}

/** The rows as the table holds them now: `id:v` for each. */
async function versions(table: string): Promise<string[]> {
  const { rows } = await setup.query(`select id, v from ${table} order by id`)
  return rows.map((row: { id: number; v: number }) => `${row.id}:${row.v}`)
}

/** A watermark store in memory that can be told to fail. */
function memoryStore(): WatermarkStore & { saved: Map<string, unknown>; failSave: boolean } {
  const saved = new Map<string, unknown>()
  const store = {
    saved,
    failSave: false,
    load: async (name: string) => saved.get(name),
    save: async (name: string, watermark: unknown) => {
      if (store.failSave) throw new Error('the state store went away')
      saved.set(name, watermark)
    },
  }
  return store
}

/** One run of the feed into memory: the `id:v` of the rows it exported, in order. */
async function run(pool: pg.Pool, store: WatermarkStore, table = TABLE): Promise<string[]> {
  const sink = collector()
  await incrementalExport<object, IncrementalWatermark>({
    name: table,
    store,
    source: (after) => postgresIncrementalSource({ pool, table, orderBy: 'updated_at', after }),
    format: csv(),
    sink,
  })
  const rows = parse(sink.buffer(), { columns: true }) as Array<{ id: string; v: string }>
  return rows.map((row) => `${row.id}:${row.v}`)
}

describe('incremental exports (postgresIncrementalSource + incrementalExport)', () => {
  it('three runs with inserts and updates between them: each row version exactly once, the latest state last', async () => {
    await createOrders(TABLE, 1_000)
    const pool = testPool()
    const store = memoryStore()
    const exported: string[] = []
    const states: string[][] = []

    exported.push(...(await run(pool, store)))
    states.push(await versions(TABLE))
    expect(exported).toHaveLength(1_000)

    const changes = [
      // updates (one row twice: only its last version is there to export), inserts, a savepoint
      [`update ${TABLE} set v = v + 1, status = 'paid', updated_at = now() where id % 10 = 0`, `update ${TABLE} set v = v + 1 where id = 10`],
      [`insert into ${TABLE} (id, status, v) select i, 'new', 1 from generate_series(1001, 1100) i`],
      [`update ${TABLE} set v = v + 1, status = 'void' where id between 500 and 520`, `insert into ${TABLE} (id, status, v) values (2000, 'new', 1)`],
    ]
    for (const statements of changes) {
      const client = await setup.connect()
      await client.query('begin')
      await client.query('savepoint s')
      for (const text of statements) await client.query(text)
      await client.query('release savepoint s')
      await client.query('commit')
      client.release()
      const delta = await run(pool, store)
      const before = new Set(states.at(-1))
      const now = await versions(TABLE)
      // Exactly the versions this run's snapshot holds that the previous run's did not.
      expect(new Set(delta)).toEqual(new Set(now.filter((version) => !before.has(version))))
      exported.push(...delta)
      states.push(now)
    }
    expect(new Set(exported).size).toBe(exported.length) // no version twice
    // The latest version of every row is the last one exported for it.
    const latest = new Map(exported.map((version) => [version.split(':')[0], version]))
    expect([...latest.values()].sort()).toEqual(states.at(-1)!.slice().sort())
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('a transaction open during run 1 that commits after it, with an older updated_at (and one in a savepoint): run 2 has its rows', async () => {
    await createOrders(TABLE, 100)
    const pool = testPool()
    const store = memoryStore()
    await run(pool, store) // run 0: everything

    const late = await setup.connect()
    const savepoint = await setup.connect()
    try {
      await late.query('begin')
      await late.query(`update ${TABLE} set v = v + 1, status = 'late', updated_at = now() - interval '1 hour' where id = 5`)
      await savepoint.query('begin')
      await savepoint.query('savepoint s')
      await savepoint.query(`update ${TABLE} set v = v + 1, status = 'late', updated_at = now() - interval '1 hour' where id = 6`)
      await savepoint.query('release savepoint s')
      await setup.query(`update ${TABLE} set v = v + 1, updated_at = now() where id = 7`) // committed at once
      const run1 = await run(pool, store)
      expect(run1).toEqual(['7:2']) // 5 and 6 are not committed yet
      await late.query('commit')
      await savepoint.query('commit')
    } finally {
      late.release()
      savepoint.release()
    }
    // A watermark on updated_at would skip 5 and 6: their updated_at is older than run 1's rows.
    expect(await run(pool, store)).toEqual(['5:2', '6:2'])
    expect(await run(pool, store)).toEqual([])
  })

  it('a crash after the upload but before the state write repeats the delta; one before the upload stores nothing', async () => {
    await createOrders(TABLE, 50)
    const pool = testPool()
    const store = memoryStore()
    await run(pool, store)
    await setup.query(`update ${TABLE} set v = v + 1 where id <= 3`)
    const dir = await tempDir()

    // The file lands, the state store fails: ERR_STATE saying so; the watermark stays where it was.
    const before = store.saved.get(TABLE)
    store.failSave = true
    const failed = incrementalExport<object, IncrementalWatermark>({
      name: TABLE,
      store,
      source: (after) => postgresIncrementalSource({ pool, table: TABLE, after }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'delta-1.csv') }),
    })
    await expect(failed).rejects.toThrow(ExportError)
    await expect(failed).rejects.toMatchObject({ code: 'ERR_STATE', stage: 'state', message: expect.stringContaining('the next run exports these rows again') })
    expect(existsSync(join(dir, 'delta-1.csv'))).toBe(true)
    expect(store.saved.get(TABLE)).toBe(before)
    store.failSave = false

    // The sink fails before its commit point (its directory is a file): nothing stored, no file.
    const noDir = join(dir, 'delta-1.csv', 'delta-2.csv')
    await expect(
      incrementalExport<object, IncrementalWatermark>({
        name: TABLE,
        store,
        source: (after) => postgresIncrementalSource({ pool, table: TABLE, after }),
        format: csv(),
        sink: fileSink({ path: noDir }),
      }),
    ).rejects.toMatchObject({ code: 'ERR_SINK' })
    expect(store.saved.get(TABLE)).toBe(before)
    expect(await listDir(dir)).toEqual(['delta-1.csv'])

    // The next run exports the same delta again, then nothing.
    expect(await run(pool, store)).toEqual(['1:2', '2:2', '3:2'])
    expect(await run(pool, store)).toEqual([])
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('keeps watermarks in a Postgres table, in Redis and in a file', async () => {
    const watermark = { version: 1, snapshot: '10:12:10', seen: ['10', '11'] }
    const dir = await tempDir()
    const pool = testPool()
    await pool.query('drop table if exists se_watermarks')
    const stores: Array<[string, WatermarkStore]> = [
      ['postgres', postgresWatermarkStore({ pool, table: 'se_watermarks' })],
      ['file', fileWatermarkStore({ path: join(dir, 'state.json') })],
    ]
    const redis = redisUp ? new Redis(process.env.REDIS_URL!) : undefined
    if (redis) stores.push(['redis', redisWatermarkStore({ redis, prefix: `se-test-${process.pid}:` })])
    try {
      for (const [kind, store] of stores) {
        expect(await store.load('orders'), kind).toBeUndefined()
        await store.save('orders', watermark)
        await store.save('other', { version: 1, snapshot: '1:1:', seen: [] })
        expect(await store.load('orders'), kind).toEqual(watermark)
        await store.save('orders', { ...watermark, seen: [] })
        expect(await store.load('orders'), kind).toEqual({ ...watermark, seen: [] })
      }
      expect((await pool.query('select name from se_watermarks order by name')).rows).toEqual([{ name: 'orders' }, { name: 'other' }])
    } finally {
      if (redis) {
        await redis.del(`se-test-${process.pid}:orders`, `se-test-${process.pid}:other`)
        await redis.quit()
      }
    }
  })

  it('refuses a caller client (it reads in a snapshot of its own), a watermark that is not one, and a source without a watermark', async () => {
    const pool = testPool()
    const client = await pool.connect()
    try {
      expect(() => postgresIncrementalSource({ client, table: TABLE } as never)).toThrow(/Expected `client` to be undefined/)
    } finally {
      client.release()
    }
    expect(() => postgresIncrementalSource({ pool, table: TABLE, after: { snapshot: 'yesterday' } as never })).toThrow(
      /Expected `after` to be the watermark of an earlier run/,
    )
    await expect(
      incrementalExport({ name: 'x', store: memoryStore(), source: () => collector() as never, format: csv(), sink: collector() }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
  })
})

describe('mongoIncrementalSource', () => {
  it('three runs: every document version once by updatedAt, the boundary value not twice, a late write within the lookback exported', async () => {
    const mongo = await startMongo()
    try {
      const orders = mongo.client.db('stream_export_test').collection<{ _id: number; v: number; updatedAt: Date }>('incremental_orders')
      await orders.drop().catch(() => {})
      const base = Date.UTC(2026, 10, 23)
      const at = (minutes: number) => new Date(base + minutes * 60_000)
      // Two documents share the highest updatedAt of the first run: neither may come again.
      await orders.insertMany(Array.from({ length: 500 }, (_, i) => ({ _id: i, v: 1, updatedAt: at(Math.min(i, 498)) })))
      const write = async (id: number, v: number, minutes: number) => {
        await orders.deleteOne({ _id: id }) // an update, as the test server takes it
        await orders.insertOne({ _id: id, v, updatedAt: at(minutes) })
      }
      const store = memoryStore()
      const runOnce = async () => {
        const sink = collector()
        await incrementalExport<object, MongoIncrementalWatermark>({
          name: 'orders',
          store,
          source: (after) => mongoIncrementalSource({ collection: orders as never, after, lookbackMs: 5 * 60_000, batchSize: 100 }),
          format: csv({ columns: ['_id', 'v'] }),
          sink,
        })
        return (parse(sink.buffer(), { columns: true }) as Array<{ _id: string; v: string }>).map((row) => `${row._id}:${row.v}`)
      }

      expect(await runOnce()).toHaveLength(500)
      expect(store.saved.get('orders')).toMatchObject({ version: 1, field: 'updatedAt', type: 'date', high: at(498).getTime() })
      await write(10, 2, 600) // updated later
      await write(20, 2, 496) // committed late: its updatedAt is 2 minutes below the first run's highest
      await orders.insertOne({ _id: 1000, v: 1, updatedAt: at(601) })
      expect(await runOnce()).toEqual(['20:2', '10:2', '1000:1'])
      await write(1000, 2, 602)
      await write(30, 2, 700)
      expect(await runOnce()).toEqual(['1000:2', '30:2'])
      expect(await runOnce()).toEqual([])
    } finally {
      await mongo.close()
    }
  })
})
