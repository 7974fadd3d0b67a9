// Partitioned export jobs: the worker recipe (examples/bullmq-worker.mjs) in its own process, on
// real Redis, PostgreSQL and the test S3 server, SIGKILLed at chosen moments. A retry keeps the
// partitions its checkpoint holds (not one written again), removes what the killed attempt left
// past it, and ends with what an uninterrupted export writes; a job that finally fails leaves nothing.
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { ExportJobResult, PartitionedJobState } from '../src/bullmq.js'
import { csv, postgresSource } from '../src/index.js'
import { databaseUrl } from './fixtures/postgres.js'
import { recipeQueue } from './fixtures/recipe-worker.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { exportedBytes } from './helpers.js'

const redisUp = process.env.REDIS_AVAILABLE === '1'
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const TABLE = 'se_job_partitions'
const ROWS = 40_000
const CUSTOMERS = 200

let s3: TestS3
let pool: pg.Pool
beforeAll(async () => {
  s3 = await startS3()
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.query(
    `create table ${TABLE} as select i as id, 'c' || lpad(((i * 7919) % ${CUSTOMERS})::text, 4, '0') as customer, (i % 997) * 1.25 as amount from generate_series(1, ${ROWS}) i`,
  )
  await pool.query(`alter table ${TABLE} add primary key (customer, id)`)
}, 60_000)
afterEach(() => s3.clearFaults())
afterAll(async () => {
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.end()
  await s3.close()
})

async function partitionQueue(env: Record<string, string> = {}) {
  const { queue, events, worker } = await recipeQueue({ prefix: 'se-parts', redisUrl, s3, env: { PROGRESS_INTERVAL_MS: '50', ...env } })
  // Job ids of their own: every test's job writes a folder of its own in the one bucket.
  const add = (attempts = 3) =>
    queue.add(
      'export',
      { table: TABLE, format: 'csv', gzip: false, partitionBy: 'customer' },
      { attempts, backoff: { type: 'fixed', delay: 100 }, jobId: `${queue.name}-1` },
    )
  const state = async (id: string) => (await queue.getJob(id))?.data.exportPartitions as PartitionedJobState | undefined
  return { queue, events, worker, add, state }
}

const keysUnder = async (prefix: string) =>
  ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort()
const text = async (key: string) => (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToString()
const puts = (key: string) => s3.requests.get(`PutObject ${key}`) ?? 0
/** Each customer's CSV as an uninterrupted export writes it. */
const customerCsv = (customer: string) =>
  exportedBytes({ source: postgresSource({ pool, text: `select * from ${TABLE} where customer = $1 order by id`, values: [customer] }), format: csv() }).then(
    String,
  )

async function expectWholeExport(result: ExportJobResult, folder: string) {
  expect(result.rows).toBe(ROWS)
  expect(result.location.key).toBe(`${folder}partitions.manifest.json`)
  expect(result.partitions).toHaveLength(CUSTOMERS)
  const keys = result.partitions!.flatMap((partition) => partition.locations.map((location) => location.key))
  expect(await keysUnder(folder)).toEqual([...keys, result.location.key].sort()) // nothing else
  for (const partition of [result.partitions![0]!, result.partitions![CUSTOMERS / 2]!, result.partitions!.at(-1)!]) {
    expect(partition.urls[0]).toContain(encodeURI(partition.locations[0]!.key))
    expect(await text(partition.locations[0]!.key)).toBe(await customerCsv(String(partition.values.customer)))
  }
}

describe.skipIf(!redisUp)(`partitioned export jobs killed at chosen moments${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('killed mid-way: the retry keeps the partitions the checkpoint holds (none put again), removes the rest of the killed run, and finishes', async () => {
    const { events, worker, add, state } = await partitionQueue()
    const job = await add()
    const folder = `exports/${job.id}/`
    s3.inject({ op: 'PutObject', match: (key) => key.startsWith(folder), action: 'pass', delayMs: 15 }) // a slow store: time to kill it
    const first = worker()
    await expect.poll(async () => (await state(job.id!))?.checkpoint.partitions.length ?? 0, { timeout: 60_000, interval: 20 }).toBeGreaterThanOrEqual(40)
    first.kill('SIGKILL')
    await new Promise((resolve) => first.once('exit', resolve))
    const { checkpoint } = (await state(job.id!))!
    expect(checkpoint.partitions.length).toBeLessThan(CUSTOMERS)
    const kept = checkpoint.partitions.flatMap((partition) => partition.parts.map((part) => `${folder}${part.name}`))
    expect(await keysUnder(folder)).toEqual(expect.arrayContaining(kept))
    s3.clearFaults()

    worker()
    const result = (await job.waitUntilFinished(events, 60_000)) as ExportJobResult
    expect(result.resumed).toBe(true)
    expect(kept.map(puts)).toEqual(kept.map(() => 1))
    await expectWholeExport(result, folder)
  }, 120_000)

  it('killed after the manifest landed, before the job completed: the retry answers from the manifest and writes nothing', async () => {
    const { events, worker, add } = await partitionQueue()
    const job = await add()
    const folder = `exports/${job.id}/`
    const first = worker()
    s3.inject({
      op: 'PutObject',
      key: `${folder}partitions.manifest.json`,
      times: 1,
      action: 'pass',
      onDone: () => first.kill('SIGKILL'),
      holdResponseMs: 1000,
    })
    await new Promise((resolve) => first.once('exit', resolve))
    const written = [...s3.requests].filter(([request]) => request.startsWith(`PutObject ${folder}`))
    worker()
    const result = (await job.waitUntilFinished(events, 60_000)) as ExportJobResult
    expect([...s3.requests].filter(([request]) => request.startsWith(`PutObject ${folder}`))).toEqual(written)
    await expectWholeExport(result, folder)
  }, 120_000)

  it('a job that finally fails removes every object of its run, those of its checkpoint too', async () => {
    const { events, worker, add, state } = await partitionQueue()
    const job = await add(1)
    const folder = `exports/${job.id}/`
    s3.inject({ op: 'PutObject', match: (key) => key.startsWith(`${folder}c0150-`), action: 500 })
    worker()
    await expect(job.waitUntilFinished(events, 60_000)).rejects.toThrow()
    expect((await state(job.id!))!.checkpoint.partitions.length).toBeGreaterThan(0)
    await expect.poll(() => keysUnder(folder), { timeout: 10_000, interval: 100 }).toEqual([])
  }, 120_000)
})
