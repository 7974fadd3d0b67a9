import { randomBytes } from 'node:crypto'
import type { ChildProcess } from 'node:child_process'
import { createServer } from 'node:http'
import { GetObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3'
import { Queue, QueueEvents, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import { gunzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, fromIterable, jsonl, postgresKeysetSource } from '../src/index.js'
import { createExportProcessor, notifyWebhook, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifyWebhook, type ExportNotification } from '../src/bullmq.js'
import { resumableExport, type ExportCheckpoint } from '../src/jobs/resumable-upload.js'
import { abortUpload } from '../src/sinks/s3-multipart.js'
import { createStatements, databaseUrl } from './fixtures/postgres.js'
import { startRecipeWorker } from './fixtures/recipe-worker.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'

const redisUp = process.env.REDIS_AVAILABLE === '1'
// BullMQ 6 takes a Redis client instance in ESM (ioredis is the caller's); it duplicates it where
// it needs a connection of its own.
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const connections: Redis[] = []
const newConnection = () => {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: !redisUp })
  connections.push(connection)
  return connection
}
const TABLE = 'se_job_statements'
const ROWS = 200_000
const MiB = 1024 * 1024

let s3: TestS3
let pool: pg.Pool
beforeAll(async () => {
  s3 = await startS3()
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
  await createStatements(pool, TABLE, ROWS)
}, 120_000)
afterAll(async () => {
  await s3.close()
  await pool.end()
  await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())))
})

const getBody = async (key: string) => {
  const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
  return Buffer.from(await object.Body!.transformToByteArray())
}
const csvIds = (text: string) => (parse(text, { columns: true }) as Array<{ id: string }>).map((r) => Number(r.id))
const expectAllIds = (ids: number[], count: number) => {
  expect(ids.length).toBe(count)
  expect(ids.every((id, i) => id === i + 1)).toBe(true) // in order, none twice, none missing
}

describe('resumableExport', () => {
  it('continues a gzipped upload after a crash: the object gunzips to exactly the rows, once each', async () => {
    const key = 'resume/unit.csv.gz'
    const saved: ExportCheckpoint[] = []
    const run = (checkpoint: ExportCheckpoint | undefined, failAfterParts?: number) => {
      const source = postgresKeysetSource({ pool, table: TABLE, after: checkpoint?.lastKey, batchSize: 5000 })
      return resumableExport({
        client: s3.client,
        bucket: s3.bucket,
        key,
        contentType: 'text/csv',
        source,
        keyOf: source.keyOf,
        // 32 random bytes a row: gzip cannot shrink them, so the rows fill more than one 5 MiB member.
        transforms: [(row) => ({ ...(row as object), noise: randomBytes(32).toString('base64') })],
        encoder: csv().encoder!,
        gzip: true,
        partSize: 5 * MiB,
        checkpoint,
        onCheckpoint: async (c) => {
          saved.push(c)
          if (failAfterParts !== undefined && c.parts.length === failAfterParts) throw new Error('worker killed')
        },
      })
    }
    await expect(run(undefined, 1)).rejects.toThrow('worker killed')
    const crashedAt = saved.at(-1)!
    expect(crashedAt.parts).toHaveLength(1)
    expect(Number(crashedAt.lastKey)).toBe(crashedAt.rows)
    const result = await run(crashedAt)
    expect(result.rows).toBe(ROWS)
    expectAllIds(csvIds(gunzipSync(await getBody(key)).toString()), ROWS)
    expect(await s3.openUploads()).toEqual([])
  }, 120_000)
})

describe('resumableExport errors', () => {
  it('names the failing stage: a throwing transform is ERR_TRANSFORM, a missing upload ERR_SINK', async () => {
    const base = {
      client: s3.client,
      bucket: s3.bucket,
      contentType: 'text/csv',
      keyOf: (r: unknown) => (r as { id: number }).id,
      encoder: csv().encoder!,
      gzip: false,
      partSize: 5 * MiB,
      onCheckpoint: async () => {},
    }
    const rows = () => fromIterable(Array.from({ length: 100 }, (_, i) => ({ id: i })))
    const transform = await resumableExport({
      ...base,
      key: 'errors/t.csv',
      source: rows(),
      transforms: [
        (r) => {
          if ((r as { id: number }).id === 10) throw new Error('bad row')
          return r
        },
      ],
    }).catch((e) => e)
    expect(transform.code).toBe('ERR_TRANSFORM')
    expect(transform.message).toBe('Transform failed on row 10: bad row')
    // A failed attempt keeps its upload for the next one to resume; the last attempt aborts it.
    expect(await s3.openUploads()).toEqual(['errors/t.csv'])
    const [upload] = (await s3.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket }))).Uploads!
    await abortUpload(s3.client, s3.bucket, 'errors/t.csv', upload.UploadId!)
    const sink = await resumableExport({
      ...base,
      key: 'errors/s.csv',
      source: rows(),
      transforms: [],
      checkpoint: { uploadId: 'no-such-upload', parts: [], rows: 0, bytes: 0 },
    }).catch((e) => e)
    expect(sink.code).toBe('ERR_SINK')
  })
})

describe.skipIf(!redisUp)(`export jobs on BullMQ${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('runs an export job: progress while it runs, the object at a stable key, a presigned URL', async () => {
    const name = `se-test-${Date.now()}`
    const queue = new Queue(name, { connection: newConnection() })
    const events = new QueueEvents(name, { connection: newConnection() })
    const progress: unknown[] = []
    events.on('progress', ({ data }) => void progress.push(data))
    const notifications: ExportNotification[] = []
    const completed: Array<[string | undefined, number]> = []
    const worker = new Worker(
      name,
      createExportProcessor({
        s3: s3.client,
        bucket: s3.bucket,
        progressIntervalMs: 20,
        resolve: (job) => ({ source: fromIterable(Array.from({ length: Number(job.data.rows) }, (_, i) => ({ i }))), format: jsonl(), gzip: true }),
        notify: (n) => void notifications.push(n),
        onComplete: (result, job) => void completed.push([job.id, result.rows]),
      }),
      { connection: newConnection() },
    )
    try {
      await events.waitUntilReady()
      const job = await queue.add('export', { rows: 100_000 })
      const result = await job.waitUntilFinished(events, 60_000)
      expect(result).toMatchObject({ rows: 100_000, location: { bucket: s3.bucket, key: `exports/${job.id}.jsonl.gz` }, resumed: false })
      // The download is the gzip file itself (application/gzip, no Content-Encoding to undo).
      const downloaded = Buffer.from(await (await fetch(result.url)).arrayBuffer())
      expect(downloaded.equals(await getBody(result.location.key))).toBe(true)
      const lines = gunzipSync(downloaded).toString().trim().split('\n')
      expect(lines).toHaveLength(100_000)
      expect(progress.length).toBeGreaterThan(1)
      expect(progress.at(-1)).toMatchObject({ rows: 100_000, percent: 100 })
      expect(notifications).toEqual([expect.objectContaining({ event: 'export.completed', jobId: job.id, rows: 100_000, url: result.url })])
      expect(completed).toEqual([[job.id, 100_000]])
    } finally {
      await worker.close()
      await events.close()
      await queue.obliterate({ force: true })
      await queue.close()
    }
  }, 90_000)

  it('crash-resume: a worker killed mid-export (SIGKILL) is followed by one that finishes the same upload', async () => {
    const name = `se-crash-${Date.now()}`
    const queue = new Queue(name, { connection: newConnection() })
    const events = new QueueEvents(name, { connection: newConnection() })
    const startWorker = () => startRecipeWorker({ queue: name, redisUrl, s3, env: { LOCK_DURATION_MS: '3000' } })
    let first: ChildProcess | undefined
    let second: ChildProcess | undefined
    try {
      await events.waitUntilReady()
      // gzip off: 5 MiB parts fill fast, so the kill lands between parts.
      const job = await queue.add('export', { table: TABLE, format: 'csv', gzip: false }, { attempts: 3, backoff: { type: 'fixed', delay: 100 } })
      first = startWorker()
      await expect
        .poll(async () => (await queue.getJob(job.id!))?.data.exportCheckpoint?.parts?.length ?? 0, { timeout: 60_000, interval: 20 })
        .toBeGreaterThanOrEqual(2)
      first.kill('SIGKILL')
      const atKill = (await queue.getJob(job.id!))!.data.exportCheckpoint as ExportCheckpoint
      expect(atKill.rows).toBeGreaterThan(0)
      expect(atKill.rows).toBeLessThan(ROWS)
      // BullMQ notices the dead worker's job when its lock expires (the stalled check), then retries.
      second = startWorker()
      const result = await job.waitUntilFinished(events, 90_000)
      expect(result.resumed).toBe(true)
      expect(result.rows).toBe(ROWS)
      expectAllIds(csvIds((await getBody(result.location.key)).toString()), ROWS)
      expect(await s3.openUploads()).toEqual([])
    } finally {
      first?.kill('SIGKILL')
      second?.kill('SIGTERM')
      await events.close()
      await queue.obliterate({ force: true })
      await queue.close()
    }
  }, 150_000)
})

describe('notifyWebhook', () => {
  it('POSTs a signed notification, retrying a failing receiver', async () => {
    const received: Array<{ body: string; signature: string; timestamp: string }> = []
    let failures = 2
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        if (failures-- > 0) return void res.writeHead(503).end()
        received.push({ body, signature: String(req.headers[SIGNATURE_HEADER]), timestamp: String(req.headers[TIMESTAMP_HEADER]) })
        res.writeHead(204).end()
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`
    try {
      const notify = notifyWebhook({ url, secret: 's3cret', backoffMs: 10 })
      await notify({ event: 'export.completed', jobId: '42', rows: 7, bytes: 99, url: 'https://x/y' })
      expect(received).toHaveLength(1)
      const [{ body, signature, timestamp }] = received
      expect(JSON.parse(body)).toEqual({ event: 'export.completed', jobId: '42', rows: 7, bytes: 99, url: 'https://x/y' })
      expect(verifyWebhook({ secret: 's3cret', body, signature, timestamp })).toBe(true)
      expect(verifyWebhook({ secret: 'wrong', body, signature, timestamp })).toBe(false)
      expect(verifyWebhook({ secret: 's3cret', body: body.replace('7', '8'), signature, timestamp })).toBe(false)
      expect(verifyWebhook({ secret: 's3cret', body, signature, timestamp: String(Number(timestamp) - 3600) })).toBe(false)

      failures = 100
      const error = await notifyWebhook({ url, secret: 's', attempts: 2, backoffMs: 5 })({
        event: 'export.failed',
        jobId: '1',
        error: { code: 'ERR_SOURCE', message: 'x' },
      }).catch((e) => e)
      expect(error.code).toBe('ERR_SINK')
      expect(error.message).toBe('Webhook notification failed: the webhook answered 503')
    } finally {
      server.close()
    }
  })
})
