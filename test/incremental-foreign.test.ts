import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse } from 'csv-parse/sync'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  csv,
  incrementalExport,
  postgresIncrementalSource,
  type IncrementalWatermark,
  type PostgresIncrementalSourceOptions,
  type WatermarkStore,
} from '../src/index.js'
import { createExportProcessor } from '../src/bullmq.js'
import { databaseUrl } from './fixtures/postgres.js'
import { freePort, startEmbeddedPostgres } from './fixtures/embedded-postgres.js'
import { startS3 } from './fixtures/s3-server.js'
import { collector } from './helpers.js'

// Watermarks that cannot belong to the server they are used on (issue #30): one taken on another
// cluster (a second PostgreSQL started here), one ahead of the server's transaction ids (forged).

const TABLE = 'se_incremental_foreign'

/** A second PostgreSQL cluster of our own (its own system identifier and transaction ids). */
interface Cluster {
  url: string
  pool: pg.Pool
  stop(): Promise<void>
}

async function startCluster(): Promise<Cluster> {
  // In a child process (test/fixtures/embedded-postgres.ts): loaded here, embedded-postgres's exit
  // hooks would decide this test process's exit code.
  const server = await startEmbeddedPostgres()
  const pool = new pg.Pool({ connectionString: server.url, max: 4 })
  // A server stopped at the end terminates clients the pool is still closing (57P01): expected, and
  // unheard the pool would throw it.
  pool.on('error', () => {})
  return {
    url: server.url,
    pool,
    async stop() {
      await pool.end()
      await server.stop()
    },
  }
}

let main: pg.Pool
let second: Cluster

beforeAll(async () => {
  main = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
  second = await startCluster()
}, 120_000)
afterAll(async () => {
  await main?.end()
  await second?.stop()
}, 60_000)

/** A fresh table of `rows` rows, version 1 each. */
async function createOrders(pool: pg.Pool, rows: number): Promise<void> {
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.query(`create table ${TABLE} (id int primary key, v int not null)`)
  await pool.query(`insert into ${TABLE} (id, v) select i, 1 from generate_series(1, $1) i`, [rows])
}

/** The server's system identifier. */
async function systemIdentifier(pool: pg.Pool): Promise<string> {
  return (await pool.query<{ id: string }>('select system_identifier::text as id from pg_control_system()')).rows[0]!.id
}

/** The next transaction id the server's snapshots start from (64-bit). */
async function nextXid(pool: pg.Pool): Promise<bigint> {
  return BigInt((await pool.query<{ x: string }>('select pg_snapshot_xmax(pg_current_snapshot())::text as x')).rows[0]!.x)
}

/**
 * Uses up transaction ids until the server's are past `xid`: one commit each, not waited for on
 * disk (the main server may be tens of thousands of ids ahead after a full test run).
 */
async function advancePast(pool: pg.Pool, xid: bigint): Promise<void> {
  const n = xid - (await nextXid(pool)) + 10n
  if (n > 0n)
    await pool.query(
      `do $$ begin perform set_config('synchronous_commit', 'off', false); for i in 1..${n} loop perform pg_current_xact_id(); commit; end loop; end $$`,
    )
}

/** A watermark store in memory. */
function memoryStore(name?: string, watermark?: unknown): WatermarkStore & { saved: Map<string, unknown> } {
  const saved = new Map<string, unknown>(name === undefined ? [] : [[name, watermark]])
  return { saved, load: async (feed) => saved.get(feed), save: async (feed, value) => void saved.set(feed, value) }
}

type Extra = Omit<PostgresIncrementalSourceOptions, 'pool' | 'table' | 'after'>

/** One run of the feed: the `id:v` of the rows it exported. */
async function run(pool: pg.Pool, store: WatermarkStore, extra: Extra = {}): Promise<string[]> {
  const sink = collector()
  await incrementalExport<object, IncrementalWatermark>({
    name: TABLE,
    store,
    source: (after) => postgresIncrementalSource({ pool, table: TABLE, after, ...extra }),
    format: csv(),
    sink,
  })
  return (parse(sink.buffer(), { columns: true }) as Array<{ id: string; v: string }>).map((row) => `${row.id}:${row.v}`)
}

const all = (rows: number) => Array.from({ length: rows }, (_, i) => `${i + 1}:1`)

/** A watermark of the main server, taken after its table was made. */
async function mainWatermark(): Promise<IncrementalWatermark> {
  await createOrders(main, 3)
  const store = memoryStore()
  await run(main, store)
  return store.saved.get(TABLE) as IncrementalWatermark
}

/**
 * A watermark of the main server (its system identifier), its snapshot moved to ids the second
 * cluster is about to pass: as one taken on a server as busy as the second. (Advancing the second
 * cluster past the main server's real ids took longer than a test's time once the suite had run.)
 */
async function mainWatermarkNear(pool: pg.Pool): Promise<IncrementalWatermark> {
  const taken = await mainWatermark()
  const near = (await nextXid(pool)) + 50n
  return { ...taken, snapshot: `${near}:${near}:`, seen: [] }
}

describe('a watermark that cannot belong to the server (postgresIncrementalSource)', () => {
  it('one taken on another cluster is refused with ERR_STATE naming both system identifiers: nothing exported, the stored one kept', async () => {
    const foreign = await mainWatermarkNear(second.pool)
    // The second cluster's rows were written before its transaction ids passed the watermark's:
    // by transaction ids alone they look older than the watermark (the 0 rows).
    await createOrders(second.pool, 20)
    await advancePast(second.pool, BigInt(foreign.snapshot.split(':')[1]!))
    const store = memoryStore(TABLE, foreign)
    const failed = run(second.pool, store)
    await expect(failed).rejects.toMatchObject({
      code: 'ERR_STATE',
      stage: 'state',
      message: expect.stringContaining(`system identifier ${foreign.system}`),
    })
    await expect(failed).rejects.toThrow(await systemIdentifier(second.pool))
    expect(store.saved.get(TABLE)).toBe(foreign)
  })

  it('and the other way round: a watermark of the second cluster is refused on the main server, whose ids are far ahead of it', async () => {
    await createOrders(second.pool, 3)
    const taken = memoryStore()
    await run(second.pool, taken)
    const foreign = taken.saved.get(TABLE) as IncrementalWatermark
    await createOrders(main, 5)
    const store = memoryStore(TABLE, foreign)
    await expect(run(main, store)).rejects.toMatchObject({
      code: 'ERR_STATE',
      stage: 'state',
      message: expect.stringContaining(`system identifier ${foreign.system}, and this server's is ${await systemIdentifier(main)}`),
    })
    expect(store.saved.get(TABLE)).toBe(foreign)
    expect(foreign.system).toBe(await systemIdentifier(second.pool))
  })

  it("onForeignWatermark: 'reexport' exports every row and stores a watermark of this cluster; the feed goes on from it", async () => {
    const foreign = await mainWatermarkNear(second.pool)
    await createOrders(second.pool, 20)
    await advancePast(second.pool, BigInt(foreign.snapshot.split(':')[1]!))
    const store = memoryStore(TABLE, foreign)
    expect(await run(second.pool, store, { onForeignWatermark: 'reexport' })).toEqual(all(20))
    const stored = store.saved.get(TABLE) as IncrementalWatermark
    expect(stored.system).toBe(await systemIdentifier(second.pool))
    expect(BigInt(stored.snapshot.split(':')[1]!)).toBeLessThanOrEqual(await nextXid(second.pool))
    // A watermark of this cluster: not foreign, so the option changes nothing.
    await second.pool.query(`update ${TABLE} set v = 2 where id in (4, 5)`)
    expect(await run(second.pool, store, { onForeignWatermark: 'reexport' })).toEqual(['4:2', '5:2'])
    expect(await run(second.pool, store)).toEqual([])
  })

  it('one whose transaction ids are ahead of the server (forged) is refused with ERR_STATE; reexport starts over', async () => {
    const own = await mainWatermark()
    const ahead = (await nextXid(main)) + 1_000_000n
    const forged: IncrementalWatermark = { ...own, snapshot: `${ahead}:${ahead}:`, seen: [] }
    const store = memoryStore(TABLE, forged)
    await main.query(`insert into ${TABLE} (id, v) values (4, 1)`)
    await expect(run(main, store)).rejects.toMatchObject({ code: 'ERR_STATE', stage: 'state', message: expect.stringContaining(`${ahead}`) })
    expect(store.saved.get(TABLE)).toBe(forged)
    expect(await run(main, store, { onForeignWatermark: 'reexport' })).toEqual(all(4))
    expect(await run(main, store)).toEqual([])
  })

  it('a watermark of the previous version (no system identifier) keeps working and is upgraded; the transaction id check still applies', async () => {
    const { system, ...legacy } = await mainWatermark()
    expect(system).toBe(await systemIdentifier(main))
    const store = memoryStore(TABLE, legacy)
    await main.query(`update ${TABLE} set v = 2 where id = 2`)
    expect(await run(main, store)).toEqual(['2:2'])
    expect(store.saved.get(TABLE)).toMatchObject({ version: 1, system })

    const ahead = (await nextXid(main)) + 1_000_000n
    const forged = { ...legacy, snapshot: `${ahead}:${ahead + 2n}:${ahead}`, seen: [] }
    store.saved.set(TABLE, forged)
    await expect(run(main, store)).rejects.toMatchObject({ code: 'ERR_STATE', message: expect.stringContaining(`${ahead + 2n}`) })
    expect(store.saved.get(TABLE)).toBe(forged)
  })

  it('a role that may not read pg_control_system(): watermarks without the identifier; one that has one is refused, since it cannot be checked', async () => {
    const foreign = await mainWatermarkNear(second.pool)
    await createOrders(second.pool, 5)
    await advancePast(second.pool, BigInt(foreign.snapshot.split(':')[1]!))
    await second.pool.query(`drop role if exists se_plain`)
    await second.pool.query(`create role se_plain login password 'plain'`)
    await second.pool.query(`grant select on ${TABLE} to se_plain`)
    await second.pool.query('revoke execute on function pg_control_system() from public')
    const plain = new pg.Pool({ connectionString: second.url.replace('postgres:postgres@', 'se_plain:plain@'), max: 2 })
    try {
      await expect(plain.query('select system_identifier from pg_control_system()')).rejects.toMatchObject({ code: '42501' })
      const store = memoryStore()
      expect(await run(plain, store)).toEqual(all(5))
      const own = store.saved.get(TABLE) as IncrementalWatermark
      expect(own).not.toHaveProperty('system')
      await second.pool.query(`update ${TABLE} set v = 2 where id = 3`)
      expect(await run(plain, store)).toEqual(['3:2'])

      store.saved.set(TABLE, foreign)
      await expect(run(plain, store)).rejects.toMatchObject({ code: 'ERR_STATE', message: expect.stringContaining('pg_control_system') })
      expect(store.saved.get(TABLE)).toBe(foreign)
    } finally {
      await plain.end()
      await second.pool.query('grant execute on function pg_control_system() to public')
    }
  })

  it('a BullMQ export job goes through the same check: it fails with ERR_STATE, nothing uploaded, the watermark kept', async () => {
    const own = await mainWatermark()
    const ahead = (await nextXid(main)) + 1_000_000n
    const forged: IncrementalWatermark = { ...own, snapshot: `${ahead}:${ahead}:`, seen: [] }
    const store = memoryStore(TABLE, forged)
    const s3 = await startS3()
    try {
      const processor = createExportProcessor({
        s3: s3.client,
        bucket: s3.bucket,
        // As a worker's resolve is written: the source fails (ERR_STATE) while the processor still
        // asks S3 about the key, before exportStream listens to it.
        resolve: async () => ({
          source: postgresIncrementalSource({ pool: main, table: TABLE, after: (await store.load(TABLE)) as IncrementalWatermark }),
          format: csv(),
          watermark: { store, name: TABLE },
        }),
      })
      const job = { id: '1', data: {}, attemptsMade: 0, opts: {}, updateProgress: async () => {}, updateData: async () => {} }
      await expect(processor(job)).rejects.toMatchObject({ code: 'ERR_STATE', message: expect.stringContaining(`${ahead}`) })
      expect(store.saved.get(TABLE)).toBe(forged)
      expect(await s3.exists('exports/1.csv')).toBe(false)
      expect(await s3.openUploads()).toEqual([])
    } finally {
      await s3.close()
    }
  })

  it('refuses an unknown onForeignWatermark, an unknown option and a watermark with a malformed or unknown field', () => {
    const pool = main
    expect(() => postgresIncrementalSource({ pool, table: TABLE, onForeignWatermark: 'ignore' as never })).toThrow(
      /Expected `onForeignWatermark` to be one of `error`, `reexport`/,
    )
    expect(() => postgresIncrementalSource({ pool, table: TABLE, onForeignWatermarks: 'reexport' } as never)).toThrow(/onForeignWatermarks/)
    const after = { version: 1, snapshot: '10:12:10', seen: ['11'] } as const
    expect(() => postgresIncrementalSource({ pool, table: TABLE, after: { ...after, system: 7 } as never })).toThrow(/Expected `after` to be/)
    expect(() => postgresIncrementalSource({ pool, table: TABLE, after: { ...after, cluster: 'x' } as never })).toThrow(/Expected `after` to be/)
  })

  it('incrementalExport refuses a misspelt option before it loads the watermark or makes the source', async () => {
    const store = memoryStore()
    let loads = 0
    let sources = 0
    const counted: WatermarkStore = { load: async (feed) => (loads++, store.load(feed)), save: store.save }
    const options = {
      name: TABLE,
      store: counted,
      source: (after: IncrementalWatermark | undefined) => (sources++, postgresIncrementalSource({ pool: main, table: TABLE, after })),
      format: csv(),
      sink: collector(),
      gzp: true,
    }
    await expect(incrementalExport(options as never)).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/Unknown option `gzp`.*did you mean `gzip`/),
    })
    expect([loads, sources]).toEqual([0, 0])
  })
})

describe('frozen rows (VACUUM FREEZE keeps xmin since PostgreSQL 9.4)', () => {
  it('freezing between runs neither repeats nor loses a row', async () => {
    await createOrders(second.pool, 50)
    const store = memoryStore()
    expect(await run(second.pool, store)).toHaveLength(50)
    await second.pool.query(`update ${TABLE} set v = 2 where id % 10 = 0`)
    const before = (await second.pool.query(`select id, xmin::text from ${TABLE} order by id`)).rows
    // Every row version frozen: again while an autovacuum's ANALYZE still holds a snapshot back.
    await second.pool.query('create extension if not exists pg_visibility')
    const allFrozen = async () => {
      await second.pool.query(`vacuum (freeze) ${TABLE}`)
      return (await second.pool.query<{ all: boolean }>(`select bool_and(all_frozen) as all from pg_visibility_map('${TABLE}')`)).rows[0]!.all
    }
    for (let i = 0; i < 50 && !(await allFrozen()); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    expect(await allFrozen()).toBe(true)
    expect((await second.pool.query(`select id, xmin::text from ${TABLE} order by id`)).rows).toEqual(before)
    expect(await run(second.pool, store)).toEqual(['10:2', '20:2', '30:2', '40:2', '50:2'])
    expect(await run(second.pool, store)).toEqual([])
  })
})

// PostgreSQL's own binaries with pg_resetwal (embedded-postgres ships without it): a cluster
// moved one epoch on, so that a frozen row's xmin aliases a transaction of the new epoch.
const resetwalDir = ['/usr/lib/postgresql'].flatMap((root) => (existsSync(root) ? [root] : [])).length
  ? ['18', '17', '16', '15', '14', '13'].map((v) => `/usr/lib/postgresql/${v}/bin`).find((dir) => existsSync(join(dir, 'pg_resetwal')))
  : undefined

describe('wraparound (PostgreSQL binaries with pg_resetwal)', () => {
  it.skipIf(resetwalDir === undefined)(
    "frozen rows whose xmins are a running transaction's ids one epoch on do not make it 'seen': its rows, a subtransaction's too, are exported",
    async () => {
      const bin = (name: string, args: string[]) => {
        const [file, argv] =
          process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', join(resetwalDir!, name), ...args]] : [join(resetwalDir!, name), args]
        return promisify(execFile)(file, argv)
      }
      const dir = await mkdtemp(join(tmpdir(), 'stream-export-pg-wrap-'))
      await chmod(dir, 0o777)
      const data = join(dir, 'data')
      const port = await freePort()
      const start = () =>
        bin('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c autovacuum=off`, 'start'])
      const stop = () => bin('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'])
      let pool: pg.Pool | undefined
      let running = false
      try {
        await bin('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres'])
        await start()
        running = true
        const url = `postgres://postgres@127.0.0.1:${port}/postgres`
        pool = new pg.Pool({ connectionString: url, max: 4 })
        // Two groups of rows frozen with consecutive xmins: 1-5 by one transaction, 6-10 by the next.
        await createOrders(pool, 5)
        await pool.query(`insert into ${TABLE} (id, v) select i, 1 from generate_series(6, 10) i`)
        const xmins = (await pool.query<{ x: string }>(`select distinct xmin::text as x from ${TABLE} order by 1`)).rows.map((row) => Number(row.x))
        expect(xmins).toEqual([xmins[0], xmins[0]! + 1])
        const written = xmins[0]!
        await bin('vacuumdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '--all', '--freeze', '-q'])
        await pool.end()
        pool = undefined
        await stop()
        running = false
        // One epoch on, two ids before the rows' xmins: the frozen rows' ids are then those of the
        // next transaction but two and of its first subtransaction.
        await bin('pg_resetwal', ['-e', '1', '-x', String(written - 2), '-u', '3', data])
        await start()
        running = true
        pool = new pg.Pool({ connectionString: url, max: 4 })
        const aliased = 2n ** 32n + BigInt(written)
        while ((await nextXid(pool)) < aliased) await pool.query('select pg_current_xact_id()')
        const late = await pool.connect()
        const store = memoryStore()
        try {
          await late.query('begin')
          await late.query(`insert into ${TABLE} (id, v) values (11, 1)`)
          await late.query('savepoint s')
          await late.query(`insert into ${TABLE} (id, v) values (12, 1)`)
          await late.query('release savepoint s')
          // One that ends after them: the run's snapshot reaches past both, the top transaction in
          // its xip, the subtransaction not (pg_current_snapshot() lists no subtransactions).
          await pool.query('select pg_current_xact_id()')
          const { rows } = await late.query<{ id: string; xmin: string }>(`select id, xmin::text from ${TABLE} where id > 10 order by id`)
          expect(rows.map((row) => BigInt(row.xmin) + 2n ** 32n)).toEqual([aliased, aliased + 1n]) // the top and the sub transaction
          expect(await run(pool, store)).toEqual(all(10)) // 11 and 12 are not committed yet
          await late.query('commit')
        } finally {
          late.release()
        }
        // The frozen rows alias the late transaction again: exported once more (once an epoch), with its rows.
        expect(await run(pool, store)).toEqual([...all(10), '11:1', '12:1'])
        expect(await run(pool, store)).toEqual([])
      } finally {
        await pool?.end()
        if (running) await stop()
        await rm(dir, { recursive: true, force: true })
      }
    },
    120_000,
  )
})
