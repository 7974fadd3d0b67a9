// In-process shards run on worker threads loaded from the build: these tests use dist, as users do.
import { readdir, readFile, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join, sep } from 'node:path'
import { Writable } from 'node:stream'
import { gunzipSync } from 'node:zlib'
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import * as dist from '../../dist/index.js'
import { databaseUrl, otherBackends, testPool } from '../fixtures/postgres.js'
import { collector, expectSameBytes, listDir, tempDir } from '../helpers.js'

const { csv, exportStream, ExportError, fileSink, jsonl, parquet, postgresShardedSource, postgresSource } = dist
const TABLE = 'se_sharded'
const ACCOUNTS = 'se_sharded_accounts'

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await pool.query(`drop table if exists ${TABLE}, ${ACCOUNTS}`)
  // Values each path must write exactly: quotes and line breaks, numeric, timestamptz, bytea,
  // jsonb, nulls; every 7th key missing.
  await pool.query(
    `create table ${TABLE} as select i::bigint as id,
       md5(i::text) || case when i % 5 = 0 then E'\\n"quoted", comma' else '' end as note,
       (i * 1.25)::numeric(12, 2) as amount, timestamptz '2026-01-01 00:00:00+00' + i * interval '1.5 second' as at,
       case when i % 3 = 0 then null else decode(md5(i::text), 'hex') end as blob,
       jsonb_build_object('i', i, 's', 'a,b') as doc
     from generate_series(1, 70000) i where i % 7 <> 0`,
  )
  await pool.query(`alter table ${TABLE} add primary key (id)`)
  await pool.query(`analyze ${TABLE}`)
  await pool.end()
})

/**
 * What exports left in a spill folder (`tempDir`): anything inside this process's folder,
 * `stream-export-spill-<uid>/<pid>-<random>/`, which stays (empty) until the process exits.
 */
async function leftInSpill(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((path) => path.split(sep).length > 2)
}

/** The bytes of one cursor over the table, as exportStream writes them with `format`. */
async function serial(format: () => InstanceType<typeof Writable>, extra: object = {}): Promise<Buffer> {
  const sink = collector()
  await exportStream({
    source: postgresSource({ connectionString: databaseUrl(), text: `select * from ${TABLE} order by id` }),
    format: format() as never,
    sink,
    ...extra,
  })
  return sink.buffer()
}

describe('postgresShardedSource', () => {
  it('writes the bytes of one cursor over the table, in key order, with CSV and JSON Lines (shards encode), a transform and Parquet (rows cross threads)', async () => {
    const pool = testPool()
    for (const [name, format, extra] of [
      ['csv', () => csv(), {}],
      ['jsonl', () => jsonl(), {}],
      ['csv with a transform', () => csv(), { transform: (row: Record<string, unknown>) => ({ ...row, note: String(row.note).length }) }],
      ['parquet', () => parquet(), {}],
    ] as const) {
      const expected = await serial(format as never, extra)
      const sink = collector()
      const source = postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, shards: 4 })
      const result = await exportStream({ source, format: format() as never, sink, ...extra })
      expect(result.rows, name).toBe(60000)
      expect(source.shards, name).toBe(4)
      expectSameBytes(sink.buffer(), expected)
    }
    expect(await otherBackends(pool)).toEqual([]) // the coordinator's and every shard's connection closed
  }, 120_000) // four exports over worker threads: 30 s was not enough on a loaded 2-core machine

  it('reads ONE snapshot: while a writer keeps moving amounts between rows of different shards, the exported total never changes', async () => {
    const pool = testPool(2)
    await pool.query(`drop table if exists ${ACCOUNTS}`)
    await pool.query(`create table ${ACCOUNTS} as select i::bigint as id, 1000::bigint as balance from generate_series(1, 40000) i`)
    await pool.query(`alter table ${ACCOUNTS} add primary key (id)`)
    let stop = false
    let moves = 0
    // Each move takes 1 from a row near the start and gives it to a row near the end, in one transaction.
    const writer = (async () => {
      const client = await pool.connect()
      try {
        for (let i = 0; !stop; i++) {
          await client.query(
            `begin; update ${ACCOUNTS} set balance = balance - 1 where id = ${1 + (i % 5000)}; update ${ACCOUNTS} set balance = balance + 1 where id = ${35000 + (i % 5000)}; commit`,
          )
          moves++
        }
      } finally {
        client.release()
      }
    })()
    try {
      for (let run = 0; run < 3; run++) {
        const sink = collector()
        await exportStream({ source: postgresShardedSource({ pool, table: ACCOUNTS, shards: 4, batchSize: 500 }), format: csv(), sink })
        const lines = sink.buffer().toString().trim().split('\n').slice(1)
        expect(lines).toHaveLength(40000)
        expect(lines.reduce((sum, line) => sum + Number(line.split(',')[1]), 0)).toBe(40000 * 1000)
      }
    } finally {
      stop = true
      await writer
    }
    expect(moves).toBeGreaterThan(0)
  })

  it('holds what shards read ahead of their turn on disk (bounded memory), hands it on in order, and removes the files', async () => {
    const dir = await tempDir()
    const expected = await serial(() => jsonl())
    const source = postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, shards: 3, bufferBytes: 64 * 1024, tempDir: dir, count: 'exact' })
    // A destination that takes nothing until the later shards are on disk (or 20 s have passed):
    // shards 2 and 3, two thirds of the bytes, must go there but for what memory may hold of each
    // (64 KiB and a batch: 1 MB is ample).
    const onDisk = (expected.length * 2) / 3 - 1_000_000
    const sink = collector()
    const write = sink._write.bind(sink)
    let gate: Promise<void> | undefined
    sink._write = (chunk, encoding, callback) => {
      gate ??= (async () => {
        for (const started = Date.now(); source.spilledBytes < onDisk && Date.now() - started < 20_000;) await new Promise((r) => setTimeout(r, 20))
      })()
      void gate.then(() => write(chunk, encoding, callback))
    }
    const reports: Array<{ rows: number; totalRows?: number }> = []
    await exportStream({ source, format: jsonl(), sink, progressIntervalMs: 20, onProgress: (p) => void reports.push(p) })
    expect(reports.at(-1)).toMatchObject({ rows: 60000, totalRows: 60000 }) // counted in the export's snapshot
    expectSameBytes(sink.buffer(), expected)
    expect(source.spilledBytes).toBeGreaterThan(onDisk)
    expect(await leftInSpill(dir)).toEqual([])
  })

  it('an abort mid-export rejects with ERR_ABORTED and leaves no file, no temp file and no connection', async () => {
    const pool = testPool()
    const dir = await tempDir()
    const spill = await tempDir()
    const controller = new AbortController()
    const source = postgresShardedSource({ pool, table: TABLE, shards: 4, bufferBytes: 16 * 1024, tempDir: spill })
    const error = await exportStream({
      source,
      format: csv(),
      gzip: true,
      sink: fileSink({ path: join(dir, 'out.csv.gz') }),
      signal: controller.signal,
      progressIntervalMs: 5,
      onProgress: (progress) => {
        if (progress.rows > 0) controller.abort()
      },
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ExportError)
    expect((error as InstanceType<typeof ExportError>).code).toBe('ERR_ABORTED')
    expect(await listDir(dir)).toEqual([])
    expect(await leftInSpill(spill)).toEqual([])
    await expect.poll(() => otherBackends(pool), { timeout: 5000 }).toEqual([])
    // Aborted while the coordinator plans (its snapshot transaction open): its connection goes too.
    const early = new AbortController()
    const planning = exportStream({ source: postgresShardedSource({ pool, table: TABLE, shards: 4 }), format: csv(), sink: collector(), signal: early.signal })
    await expect.poll(async () => (await otherBackends(pool)).length, { interval: 1 }).toBeGreaterThan(0)
    early.abort()
    await expect(planning).rejects.toMatchObject({ code: 'ERR_ABORTED' })
    await expect.poll(() => otherBackends(pool), { timeout: 5000 }).toEqual([])
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('a shard whose backend dies fails the export with ERR_SOURCE naming the shard, and leaves nothing behind', async () => {
    const dir = await tempDir()
    // One connection to kill with, closed before the leak check (it would count as this test's).
    const killer = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    let killed = 0
    const error = await exportStream({
      source: postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, shards: 3, batchSize: 100, bufferBytes: 16 * 1024 }),
      format: csv({ nullValue: 'NULL' }), // the row path: each shard fetches page after page
      sink: fileSink({ path: join(dir, 'out.csv') }),
      progressIntervalMs: 5,
      onProgress: async () => {
        if (killed > 0) return
        // The backend of a shard reading its range (the coordinator has committed by now).
        const { rows } = await killer.query(
          `select pg_terminate_backend(pid) from pg_stat_activity where application_name = current_setting('application_name') and query like '%stream_export_shard%' and pid <> pg_backend_pid() limit 1`,
        )
        killed = Math.max(killed, rows.length)
      },
    }).catch((e: unknown) => e)
    await killer.end()
    expect(killed).toBe(1)
    expect((error as InstanceType<typeof ExportError>).code).toBe('ERR_SOURCE')
    expect((error as Error).message).toMatch(/^Shard \d of 3: /)
    expect(await listDir(dir)).toEqual([])
    const pool = testPool(1)
    await expect.poll(() => otherBackends(pool), { timeout: 5000 }).toEqual([])
  })

  it('bad input fails before any output: a missing table (ERR_SOURCE), a client or a bad shard count (ERR_INVALID_OPTION)', async () => {
    const dir = await tempDir()
    const error = await exportStream({
      source: postgresShardedSource({ connectionString: databaseUrl(), table: 'se_sharded_missing' }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'out.csv') }),
    }).catch((e: unknown) => e)
    expect((error as InstanceType<typeof ExportError>).code).toBe('ERR_SOURCE')
    expect((error as Error).message).toMatch(/se_sharded_missing/)
    expect(await listDir(dir)).toEqual([])
    const client = new pg.Client({ connectionString: databaseUrl() })
    expect(() => postgresShardedSource({ client, table: TABLE } as never)).toThrow(/pool \| connectionString/)
    expect(() => postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, shards: 0 })).toThrow(ExportError)
    const withCallback = new pg.Pool({ connectionString: databaseUrl(), password: async () => 'x' })
    expect(() => postgresShardedSource({ pool: withCallback, table: TABLE })).toThrow(/password callback/)
    await withCallback.end()
  })

  it('refuses more shards than the server has connections for (max_connections), with ERR_INVALID_OPTION naming the limit, before any shard starts', async () => {
    const pool = testPool()
    const { rows } = await pool.query(`select current_setting('max_connections')::int as max`)
    const max = rows[0].max as number
    const dir = await tempDir()
    const source = postgresShardedSource({ pool, table: TABLE, shards: max + 5 })
    const error = await exportStream({ source, format: csv(), sink: fileSink({ path: join(dir, 'out.csv') }) }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ExportError)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', stage: 'options' })
    expect((error as Error).message).toMatch(
      new RegExp(`^Expected \`shards\` to be at most \\d+ \\(the server's max_connections ${max}, less \\d+ reserved and \\d+ in use\\), got \`${max + 5}\``),
    )
    expect((error as Error).message).toContain('lower `shards` or raise max_connections')
    expect(source.shards).toBe(0) // no worker thread was started
    expect(await listDir(dir)).toEqual([])
    expect(await otherBackends(pool)).toEqual([]) // the coordinator's connection went back, its transaction ended
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('works from the CommonJS build too (its worker is the .cjs file), gzipped to a file', async () => {
    const dir = await tempDir()
    const require = createRequire(import.meta.url)
    const cjs = require('../../dist/index.cjs') as typeof dist
    const path = join(dir, 'out.csv.gz')
    await cjs.exportStream({
      source: cjs.postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, shards: 2 }),
      format: cjs.csv(),
      gzip: true,
      sink: cjs.fileSink({ path }),
    })
    expect((await stat(path)).size).toBeGreaterThan(0)
    expectSameBytes(gunzipSync(await readFile(path)), await serial(() => csv()))
    expect(await readdir(dir)).toEqual(['out.csv.gz'])
  })
})
