// Export jobs whose worker is SIGKILLed at chosen moments: the worker is the recipe
// (examples/bullmq-worker.mjs) in its own process on real Redis, Postgres and the test S3 server,
// which enforces real S3's completion rules and kills the worker at the exact request.
import { gunzipSync } from 'node:zlib'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { ExportCheckpoint } from '../src/bullmq.js'
import { createStatements, databaseUrl, tableCsv } from './fixtures/postgres.js'
import { recipeQueue } from './fixtures/recipe-worker.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { expectSameBytes } from './helpers.js'

const redisUp = process.env.REDIS_AVAILABLE === '1'
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const TABLE = 'se_crash_statements'
const ROWS = 120_000 // ~15 MB of CSV: three 5 MiB parts; ~3 MB gzipped: one

let s3: TestS3
/** The table exported in one go, uninterrupted: what every killed and resumed job must write. */
let serialExport: Buffer

beforeAll(async () => {
  s3 = await startS3()
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
  await createStatements(pool, TABLE, ROWS)
  await pool.end()
  serialExport = await tableCsv(TABLE)
}, 120_000)
afterEach(() => s3.clearFaults())
afterAll(() => s3.close())

async function exportQueue(env: Record<string, string> = {}) {
  const { queue, events, worker } = await recipeQueue({ prefix: 'se-kill', redisUrl, s3, env })
  const add = (data: object) => queue.add('export', { table: TABLE, format: 'csv', ...data }, { attempts: 3, backoff: { type: 'fixed', delay: 100 } })
  const checkpoint = async (id: string) => (await queue.getJob(id))?.data.exportCheckpoint as ExportCheckpoint | undefined
  return { queue, events, worker, add, checkpoint }
}

async function expectWholeExport(key: string, gzip: boolean) {
  const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
  const body = Buffer.from(await object.Body!.transformToByteArray())
  expectSameBytes(gzip ? gunzipSync(body) : body, serialExport) // every row in order, none twice, none missing
  expect(await s3.openUploads()).toEqual([])
}

describe.skipIf(!redisUp)(`export jobs killed at chosen moments${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('killed after the last part is checkpointed, before CompleteMultipartUpload: the retry completes the upload (no empty extra part)', async () => {
    const { events, worker, add } = await exportQueue()
    const job = await add({ gzip: true })
    const key = `exports/${job.id}.csv.gz`
    const first = worker()
    s3.inject({ op: 'CompleteMultipartUpload', key, times: 1, action: 'close', onRequest: () => first.kill('SIGKILL') })
    await new Promise((resolve) => first.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 60_000)
    expect(result).toMatchObject({ rows: ROWS, resumed: true })
    await expectWholeExport(key, true)
  }, 90_000)

  it('killed after S3 assembled the object, before the checkpoint was cleared: the retry recognises the object and succeeds', async () => {
    const { events, worker, add } = await exportQueue()
    const job = await add({ gzip: true })
    const key = `exports/${job.id}.csv.gz`
    const first = worker()
    s3.inject({ op: 'CompleteMultipartUpload', key, times: 1, action: 'pass', onDone: () => first.kill('SIGKILL'), holdResponseMs: 1000 })
    await new Promise((resolve) => first.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 60_000)
    expect(result).toMatchObject({ rows: ROWS, resumed: true })
    expect(result.url).toContain(key)
    await expectWholeExport(key, true)
  }, 90_000)

  it('killed after CreateMultipartUpload, before the UploadId was saved: the orphan upload is aborted', async () => {
    const { events, worker, add } = await exportQueue()
    const job = await add({ gzip: true })
    const key = `exports/${job.id}.csv.gz`
    const first = worker()
    s3.inject({ op: 'CreateMultipartUpload', key, times: 1, action: 'pass', onDone: () => first.kill('SIGKILL'), holdResponseMs: 1000 })
    await new Promise((resolve) => first.once('exit', resolve))
    expect(await s3.openUploads()).toEqual([key]) // the orphan
    worker()
    const result = await job.waitUntilFinished(events, 60_000)
    expect(result.rows).toBe(ROWS)
    expect(s3.requests.get(`AbortMultipartUpload ${key}`)).toBeGreaterThanOrEqual(1)
    await expectWholeExport(key, true)
  }, 90_000)

  it("killed twice mid-export (two stalls): the recipe's worker settings let a third worker finish the same upload", async () => {
    const { events, worker, add, checkpoint } = await exportQueue()
    const job = await add({ gzip: false })
    const key = `exports/${job.id}.csv`
    for (const parts of [1, 2]) {
      const child = worker()
      await expect.poll(async () => (await checkpoint(job.id!))?.parts.length ?? 0, { timeout: 60_000, interval: 10 }).toBeGreaterThanOrEqual(parts)
      child.kill('SIGKILL')
      await new Promise((resolve) => child.once('exit', resolve))
    }
    worker()
    const result = await job.waitUntilFinished(events, 60_000)
    expect(result).toMatchObject({ rows: ROWS, resumed: true })
    await expectWholeExport(key, false)
  }, 120_000)

  it('a job failed for stalling (no processor ran) has its multipart upload aborted', async () => {
    const { queue, worker, add, checkpoint } = await exportQueue({ MAX_STALLED_COUNT: '0' })
    const job = await add({ gzip: false })
    const key = `exports/${job.id}.csv`
    const first = worker()
    await expect.poll(async () => (await checkpoint(job.id!))?.parts.length ?? 0, { timeout: 60_000, interval: 10 }).toBeGreaterThanOrEqual(1)
    first.kill('SIGKILL')
    await new Promise((resolve) => first.once('exit', resolve))
    expect(await s3.openUploads()).toEqual([key])
    worker() // its stalled check fails the job; its QueueEvents listener aborts the upload
    await expect.poll(async () => (await queue.getJob(job.id!))?.failedReason, { timeout: 30_000, interval: 100 }).toBe('job stalled more than allowable limit')
    await expect.poll(() => s3.openUploads(), { timeout: 10_000, interval: 100 }).toEqual([])
  }, 90_000)
})
