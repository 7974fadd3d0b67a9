import { spawn, type ChildProcess } from 'node:child_process'
import { Readable } from 'node:stream'
import { createServer } from 'node:http'
import { GetObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3'
import { Queue, QueueEvents, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import { gunzipSync, zstdDecompressSync } from 'node:zlib'
import pg from 'pg'
import { parse } from 'csv-parse/sync'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, exportStream, fromIterable, jsonArray, jsonl, postgresKeysetSource, postgresSource } from '../src/index.js'
import {
  createExportProcessor,
  notifyWebhook,
  sendExportEvents,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifyWebhook,
  type ExportNotification,
} from '../src/bullmq.js'
import { ResumableUpload, type ExportCheckpoint } from '../src/sinks/s3/resumable.js'
import { MultipartUpload } from '../src/sinks/s3/multipart.js'
import { createStatements, databaseUrl, tableCsv } from './fixtures/postgres.js'
import { startRecipeWorker } from './fixtures/recipe-worker.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { expectSameBytes, exportedBytes, noise, sdkChecksum } from './helpers.js'

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
const RESUMED_ROWS = 60_000
const NOISY = 'se_job_noise'
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
const expectAllIds = (ids: number[], count: number) => {
  expect(ids.length).toBe(count)
  expect(ids.every((id, i) => id === i + 1)).toBe(true) // in order, none twice, none missing
}

/** One attempt: the upload a checkpoint names (or a new one), fed by the same pipeline as any export. */
const attempt = async (options: {
  key: string
  checkpoint?: ExportCheckpoint
  onCheckpoint(c: ExportCheckpoint): Promise<unknown>
  source: Parameters<typeof exportStream>[0]['source']
  transform?: (row: Record<string, unknown>) => unknown
  gzip: boolean
}) => {
  const upload = new ResumableUpload({
    client: s3.client,
    bucket: s3.bucket,
    key: options.key,
    contentType: 'text/csv',
    partSize: () => 5 * MiB,
    checkpoint: options.checkpoint,
    onCheckpoint: options.onCheckpoint,
  })
  const earlier = await upload.open()
  if (earlier) return { rows: options.checkpoint!.rows, location: earlier, checksum: upload.checksum }
  const result = await exportStream({ source: options.source, transform: options.transform, format: csv(), gzip: options.gzip, sink: upload })
  return { rows: (options.checkpoint?.rows ?? 0) + result.rows, location: result.location, checksum: result.checksum }
}

describe('resumable uploads: exportStream in segments of one multipart upload', () => {
  it('continues a gzipped upload after a crash: the object gunzips to exactly the rows, once each', async () => {
    const key = 'resume/unit.csv.gz'
    const saved: ExportCheckpoint[] = []
    const source = (after?: unknown) => postgresKeysetSource({ pool, select: `select * from ${TABLE} where id <= ${RESUMED_ROWS}`, after, batchSize: 5000 })
    // 128 bytes of hash a row: gzip cannot shrink them, so the rows fill two 5 MiB members.
    const transform = (row: Record<string, unknown>) => ({ ...row, noise: noise(Number(row.id), 128) })
    const run = (checkpoint: ExportCheckpoint | undefined, failAfterParts?: number) =>
      attempt({
        key,
        checkpoint,
        source: source(checkpoint?.lastKey),
        transform,
        gzip: true, // a gzip member per part, compressed on every core
        onCheckpoint: async (c) => {
          saved.push(c)
          if (failAfterParts !== undefined && c.parts.length === failAfterParts) throw new Error('worker killed')
        },
      })
    await expect(run(undefined, 1)).rejects.toThrow('worker killed')
    const crashedAt = saved.at(-1)!
    expect(crashedAt.parts).toHaveLength(1)
    expect(Number(crashedAt.lastKey)).toBe(crashedAt.rows)
    const result = await run(crashedAt)
    expect(result.rows).toBe(RESUMED_ROWS)
    expect(saved.at(-1)!.parts.length).toBeGreaterThan(1) // the retry uploaded a part of its own
    expect(saved.at(-1)!.ended).toBe(true)
    // One header, in the first part only; every row once, in order: the bytes of an export never interrupted.
    const stored = await getBody(key)
    expectSameBytes(gunzipSync(stored), await exportedBytes({ source: source(), transform, format: csv() }))
    expect(await s3.openUploads()).toEqual([])
    // The object's checksum covers the parts of both attempts, as S3 verified it at the completion.
    expect(result.checksum).toEqual({ algorithm: 'CRC64NVME', value: await sdkChecksum('CRC64NVME', stored), bytes: stored.length, verifiedByStore: true })
  }, 120_000)

  it('a JSON array continues across parts and attempts: one array, its brackets only at the ends', async () => {
    const key = 'resume/unit.json'
    const saved: ExportCheckpoint[] = []
    const rows = (after?: unknown) =>
      fromIterable(
        (function* () {
          for (let id = Number(after ?? 0) + 1; id <= 40_000; id++) yield { id, noise: noise(id, 160) }
        })(),
      )
    const keyed = (after?: unknown) => Object.assign(rows(after), { keyOf: (row: { id: number }) => row.id })
    const upload = (checkpoint?: ExportCheckpoint, failAfterParts?: number) =>
      new ResumableUpload({
        client: s3.client,
        bucket: s3.bucket,
        key,
        contentType: 'application/json',
        partSize: () => 5 * MiB,
        checkpoint,
        onCheckpoint: async (c) => {
          saved.push(c)
          if (failAfterParts !== undefined && c.parts.length === failAfterParts) throw new Error('worker killed')
        },
      })
    const first = upload(undefined, 1)
    await first.open()
    await expect(exportStream({ source: keyed(), format: jsonArray(), sink: first })).rejects.toThrow('worker killed')
    const crashedAt = saved.at(-1)!
    const second = upload(crashedAt)
    expect(await second.open()).toBeUndefined()
    await exportStream({ source: keyed(crashedAt.lastKey), format: jsonArray(), sink: second })
    expectSameBytes(await getBody(key), await exportedBytes({ source: rows(), format: jsonArray() }))

    // Killed right after the checkpoint of the last part (the array's end) was saved: the next
    // attempt only completes the upload, and writes no second `]`.
    const endKey = 'resume/ended.json'
    const endSaved: ExportCheckpoint[] = []
    const died = new ResumableUpload({
      client: s3.client,
      bucket: s3.bucket,
      key: endKey,
      contentType: 'application/json',
      partSize: () => 5 * MiB,
      onCheckpoint: async (c) => {
        endSaved.push(c)
        if (c.ended) throw new Error('worker killed')
      },
    })
    await died.open()
    await expect(exportStream({ source: keyed(), format: jsonArray(), sink: died })).rejects.toThrow('worker killed')
    expect(endSaved.at(-1)).toMatchObject({ ended: true, rows: 40_000 })
    // No checkpoint holds the last part without saying `ended`: there is no window in which a
    // retry would write the end again.
    expect(endSaved.filter((c) => c.rows === 40_000).every((c) => c.ended)).toBe(true)
    const retry = new ResumableUpload({
      client: s3.client,
      bucket: s3.bucket,
      key: endKey,
      partSize: () => 5 * MiB,
      checkpoint: endSaved.at(-1),
      onCheckpoint: async () => {},
    })
    expect(await retry.open()).toMatchObject({ key: endKey })
    expectAllIds(
      (JSON.parse((await getBody(endKey)).toString()) as Array<{ id: number }>).map((r) => r.id),
      40_000,
    )
  }, 60_000)
})

describe('resumable upload errors', () => {
  it('names the failing stage: a throwing transform is ERR_TRANSFORM, a missing upload ERR_SINK', async () => {
    const rows = () => fromIterable(Array.from({ length: 100 }, (_, i) => ({ id: i })))
    const keyed = () => Object.assign(rows(), { keyOf: (r: { id: number }) => r.id })
    const transform = await attempt({
      key: 'errors/t.csv',
      source: keyed(),
      gzip: false,
      transform: (r) => {
        if (r.id === 10) throw new Error('bad row')
        return r
      },
      onCheckpoint: async () => {},
    }).catch((e) => e)
    expect(transform.code).toBe('ERR_TRANSFORM')
    expect(transform.message).toBe('Transform failed on row 10: bad row')
    // A failed attempt keeps its upload for the next one to resume; the last attempt aborts it.
    expect(await s3.openUploads()).toEqual(['errors/t.csv'])
    const [upload] = (await s3.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket }))).Uploads!
    await new MultipartUpload({ client: s3.client, bucket: s3.bucket, key: 'errors/t.csv' }, upload.UploadId!).abort()
    const sink = await attempt({
      key: 'errors/s.csv',
      source: keyed(),
      gzip: false,
      checkpoint: { uploadId: 'no-such-upload', parts: [], rows: 0, bytes: 0 },
      onCheckpoint: async () => {},
    }).catch((e) => e)
    expect(sink.code).toBe('ERR_SINK')
  })
})

describe('an export job that fails before its export starts (S3 asked first)', () => {
  const job = (id: string) => ({ id, data: {}, attemptsMade: 0, opts: {}, updateProgress: async () => {}, updateData: async () => {} })

  it("gives the source's connection back: a pool of one still answers after failures of S3", async () => {
    const one = new pg.Pool({ connectionString: databaseUrl(), max: 1, connectionTimeoutMillis: 3000 })
    s3.inject({ op: 'ListMultipartUploads', action: 403, times: 100 })
    try {
      const processor = createExportProcessor({
        s3: s3.client,
        bucket: s3.bucket,
        resolve: async () => ({ source: postgresKeysetSource({ pool: one, table: TABLE, key: 'id' }), format: csv() }),
      })
      const plain = createExportProcessor({
        s3: s3.client,
        bucket: s3.bucket,
        resolve: async () => ({ source: postgresSource({ pool: one, text: `select * from ${TABLE}` }), format: csv() }),
      })
      // (The keyset source connects on its first read: this one only checks the error's code.)
      await expect(processor(job('gap-1'))).rejects.toMatchObject({ code: 'ERR_SINK' }) // resumable: the upload opened first
      await expect(plain(job('gap-2'))).rejects.toMatchObject({ code: 'ERR_SINK' }) // not resumable: uploads aborted first
      expect((await one.query('select 1 as one')).rows).toEqual([{ one: 1 }])
    } finally {
      s3.clearFaults()
      await Promise.race([one.end(), new Promise((resolve) => setTimeout(resolve, 1000))]) // a client never released keeps end() waiting
    }
  })

  it('a source that fails meanwhile, with no listener of its own: the job fails with its error, nothing is thrown past it', async () => {
    s3.inject({ op: 'ListMultipartUploads', action: 'pass', delayMs: 300 })
    const uncaught: unknown[] = []
    const record = (error: unknown) => uncaught.push(error)
    process.on('uncaughtException', record)
    try {
      const processor = createExportProcessor({
        s3: s3.client,
        bucket: s3.bucket,
        resolve: async () => {
          const source = new Readable({ objectMode: true, read() {} })
          setTimeout(() => source.destroy(new Error('the database went away')), 50)
          return { source, format: csv() }
        },
      })
      const failure = await processor(job('gap-3')).catch((error: unknown) => error)
      expect(uncaught).toEqual([])
      expect(failure).toMatchObject({ code: 'ERR_SOURCE', message: expect.stringContaining('the database went away') })
      expect(await s3.exists('exports/gap-3.csv')).toBe(false)
    } finally {
      process.off('uncaughtException', record)
      s3.clearFaults()
    }
  })
})

/** The events of a Server-Sent Events stream's text: `[event, data]` pairs. */
const sseEvents = (text: string) => [...text.matchAll(/event: (\w+)\ndata: (.*)\n\n/g)].map(([, event, data]) => [event, JSON.parse(data!)])

/** Closes what a sendExportEvents test started, and removes its queue. */
async function closeEvents(worker: Worker, server: ReturnType<typeof createServer>, queueEvents: QueueEvents, queue: Queue): Promise<void> {
  await worker.close()
  server.close()
  await queueEvents.close()
  await queue.obliterate({ force: true })
  await queue.close()
}

describe.skipIf(!redisUp)(`export jobs on BullMQ${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('sendExportEvents: a status event at once, the progress while it runs, the end, and the stream closed; 404 for an unknown job', async () => {
    const name = `se-events-${Date.now()}`
    const queue = new Queue(name, { connection: newConnection() })
    const queueEvents = new QueueEvents(name, { connection: newConnection() })
    await queueEvents.waitUntilReady()
    const server = createServer(
      (req, res) => void sendExportEvents(res, { queue, queueEvents, jobId: req.url!.slice(1), result: (r) => ({ rows: (r as { rows: number }).rows }) }),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const worker = new Worker(
      name,
      async (job) => {
        for (const rows of [10, 20, 30]) {
          await job.updateProgress({ rows, percent: rows })
          await new Promise((resolve) => setTimeout(resolve, 30))
        }
        return { rows: 30, url: 'https://secret.example/presigned' }
      },
      { connection: newConnection(), autorun: false },
    )
    try {
      const job = await queue.add('export', {})
      const stream = fetch(`${url}/${job.id}`).then((response) => response.text()) // the page opens before the work starts
      await new Promise((resolve) => setTimeout(resolve, 200))
      void worker.run()
      const text = await stream // ends by itself after `completed`
      const events = sseEvents(text)
      expect(events[0]).toEqual(['status', { state: 'waiting', progress: 0 }]) // BullMQ's progress before the first report
      expect(events.filter(([event]) => event === 'progress').map(([, data]) => data.rows)).toEqual([10, 20, 30])
      expect(events.at(-1)).toEqual(['completed', { result: { rows: 30 } }]) // the URL left out
      // A page opened after the end gets the final status and an ended stream.
      expect(await (await fetch(`${url}/${job.id}`)).text()).toContain('"state":"completed","progress":{"rows":30,"percent":30},"result":{"rows":30}')
      expect((await fetch(`${url}/no-such-job`)).status).toBe(404)
      expect(queueEvents.listenerCount('progress')).toBe(0) // every stream removed its listeners
    } finally {
      await closeEvents(worker, server, queueEvents, queue)
    }
  })

  it('sendExportEvents: an end QueueEvents never reported still ends the stream, from the job state read every checkIntervalMs', async () => {
    const name = `se-events-missed-${Date.now()}`
    const queue = new Queue(name, { connection: newConnection() })
    const deaf = new QueueEvents(name, { connection: newConnection(), autorun: false }) // never reads: misses every event
    const server = createServer((req, res) => void sendExportEvents(res, { queue, queueEvents: deaf, jobId: req.url!.slice(1), checkIntervalMs: 100 }))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const worker = new Worker(name, async () => ({ rows: 7 }), { connection: newConnection(), autorun: false })
    try {
      const job = await queue.add('export', {})
      const stream = fetch(`${url}/${job.id}`).then((response) => response.text())
      await new Promise((resolve) => setTimeout(resolve, 200))
      void worker.run()
      const text = await stream
      expect(text).toContain(': still running\n\n') // the comments written while it waited
      const events = sseEvents(text)
      expect(events.map(([event]) => event)).toEqual(['status', 'completed'])
      expect(events.at(-1)).toEqual(['completed', { result: { rows: 7 } }])
      await expect(sendExportEvents(createServer as never, { queue, queueEvents: deaf, jobId: job.id!, checkIntervalMs: 0 })).rejects.toMatchObject({
        code: 'ERR_INVALID_OPTION',
      })
    } finally {
      await closeEvents(worker, server, deaf, queue)
    }
  })

  it('sendExportEvents: a job that ends between the read of the job and of its state is sent with its result', async () => {
    const name = `se-events-race-${Date.now()}`
    const queue = new Queue(name, { connection: newConnection() })
    const deaf = new QueueEvents(name, { connection: newConnection(), autorun: false })
    const worker = new Worker(name, async () => ({ rows: 7 }), { connection: newConnection(), autorun: false })
    const server = createServer(
      (req, res) =>
        void sendExportEvents(res, {
          // The real queue, with the job run to its end right after it was read (while active).
          queue: {
            getJob: async (id: string) => {
              const job = await queue.getJob(id)
              if (job && (await job.getState()) !== 'completed') {
                void worker.run()
                await expect.poll(() => job.getState()).toBe('completed')
              }
              return job
            },
          },
          queueEvents: deaf,
          jobId: req.url!.slice(1),
          checkIntervalMs: 100,
        }),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const job = await queue.add('export', {})
      const text = await fetch(`http://127.0.0.1:${(server.address() as { port: number }).port}/${job.id}`).then((response) => response.text())
      const events = sseEvents(text)
      expect(events).toEqual([['status', { state: 'completed', progress: 0, result: { rows: 7 } }]])
    } finally {
      await closeEvents(worker, server, deaf, queue)
    }
  })

  it('sendExportEvents: events that come while the job is read wait for the headers (text/event-stream, the status first); an end then is sent once', async () => {
    const name = `se-events-early-${Date.now()}`
    const queue = new Queue(name, { connection: newConnection() })
    const queueEvents = new QueueEvents(name, { connection: newConnection() })
    await queueEvents.waitUntilReady()
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    const worker = new Worker(
      name,
      async (job) => {
        await job.updateProgress({ rows: 5, percent: 50 })
        if (job.data.fail) throw new Error('the source is gone')
        await gate
        return { rows: 10 }
      },
      { connection: newConnection(), autorun: false },
    )
    /** Waits until QueueEvents has passed on `event` for job `id`. */
    const reported = (event: 'progress' | 'failed', id: string) =>
      new Promise<void>((resolve) => {
        const listener = (args: { jobId: string }) => args.jobId === id && (queueEvents.off(event, listener), resolve())
        queueEvents.on(event, listener)
      })
    // The real queue, read only once the worker has reported (progress; or the job's failure):
    // those events reach the stream's listeners before its headers could be written.
    const read = new Set<string>()
    // A job whose event may come before its request: listened for before the job is added.
    const listening = new Map<string, Promise<void>>()
    const server = createServer((req, res) => {
      const [id, event] = req.url!.slice(1).split('/') as [string, 'progress' | 'failed']
      const getJob = async (jobId: string) => {
        if (!read.has(jobId)) {
          if (read.size === 0) void worker.run()
          read.add(jobId)
          await (listening.get(jobId) ?? reported(event, jobId))
        }
        return queue.getJob(jobId)
      }
      void sendExportEvents(res, {
        queue: { getJob },
        queueEvents,
        jobId: id,
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    try {
      const running = await queue.add('export', {})
      const response = await fetch(`${url}/${running.id}/progress`)
      expect(response.headers.get('content-type')).toBe('text/event-stream') // what EventSource requires, or it gives up
      release()
      const events = sseEvents(await response.text())
      expect(events.map(([event]) => event)).toEqual(['status', 'progress', 'completed'])
      expect(events[0]).toEqual(['status', { state: 'active', progress: { rows: 5, percent: 50 } }])
      expect(events.at(-1)).toEqual(['completed', { result: { rows: 10 } }])

      // A job that failed while it was read: its status says so, once, and the stream ends.
      // (The worker runs already: the job may fail before its request comes.)
      listening.set(`${name}-failing`, reported('failed', `${name}-failing`))
      const failing = await queue.add('export', { fail: true }, { jobId: `${name}-failing` })
      const failed = await fetch(`${url}/${failing.id}/failed`)
      expect(failed.headers.get('content-type')).toBe('text/event-stream')
      expect(sseEvents(await failed.text())).toEqual([['status', { state: 'failed', progress: { rows: 5, percent: 50 }, error: 'the source is gone' }]])
      expect(queueEvents.listenerCount('progress')).toBe(0)
    } finally {
      await closeEvents(worker, server, queueEvents, queue)
    }
  })

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
        resolve: (job) => ({
          source: fromIterable(Array.from({ length: Number(job.data.rows) }, (_, i) => ({ i }))),
          format: jsonl(),
          ...(job.data.zstd ? { compression: 'zstd' as const } : { gzip: true }),
        }),
        // A notifier that returns in the next second: the result must still carry the link it sent.
        notify: async (n) => {
          notifications.push(n)
          await new Promise((resolve) => setTimeout(resolve, 1010 - (Date.now() % 1000)))
        },
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
      // zstd: a .zst object, stored as application/zstd.
      const zstdJob = await queue.add('export', { rows: 1000, zstd: true })
      const zstdResult = await zstdJob.waitUntilFinished(events, 60_000)
      expect(zstdResult.location.key).toBe(`exports/${zstdJob.id}.jsonl.zst`)
      const response = await fetch(zstdResult.url)
      expect(response.headers.get('content-type')).toBe('application/zstd')
      expect(
        zstdDecompressSync(Buffer.from(await response.arrayBuffer()))
          .toString()
          .trim()
          .split('\n'),
      ).toHaveLength(1000)
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
      // 128 hex digits a row (gzip halves them): ~13 MB of gzip, three 5 MiB members.
      await pool.query(`drop table if exists ${NOISY}`)
      await pool.query(
        `create table ${NOISY} as select i::bigint as id, md5(i::text) || md5((-i)::text) || md5((i * 7)::text) || md5((i * 13)::text) as code from generate_series(1, ${ROWS}) i`,
      )
      await pool.query(`alter table ${NOISY} add primary key (id)`)
      // gzip on, on every core: the new attempt continues through the same pipeline.
      const job = await queue.add('export', { table: NOISY, format: 'csv', gzip: true }, { attempts: 3, backoff: { type: 'fixed', delay: 100 } })
      first = startWorker()
      await expect
        .poll(async () => (await queue.getJob(job.id!))?.data.exportCheckpoint?.parts?.length ?? 0, { timeout: 60_000, interval: 10 })
        .toBeGreaterThanOrEqual(1)
      first.kill('SIGKILL')
      const atKill = (await queue.getJob(job.id!))!.data.exportCheckpoint as ExportCheckpoint
      expect(atKill.rows).toBeGreaterThan(0)
      expect(atKill.rows).toBeLessThan(ROWS)
      // BullMQ notices the dead worker's job when its lock expires (the stalled check), then retries.
      second = startWorker()
      const result = await job.waitUntilFinished(events, 90_000)
      expect(result.resumed).toBe(true)
      expect(result.rows).toBe(ROWS)
      // One header (the retry's parts continue the CSV), every row once: the bytes of an export never interrupted.
      expectSameBytes(gunzipSync(await getBody(result.location.key)), await tableCsv(NOISY))
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

describe.skipIf(!redisUp)(`the daily-delta recipe on BullMQ's job scheduler${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('runs incremental exports on a cron (every second here): every order once over the runs, an object and a signed webhook per run', async () => {
    const table = 'se_delta_orders'
    await pool.query(`drop table if exists ${table}`)
    await pool.query(`create table ${table} (id int primary key, status text not null, updated_at timestamptz not null default now())`)
    await pool.query(`insert into ${table} (id, status) select i, 'new' from generate_series(1, 2000) i`)
    const notifications: ExportNotification[] = []
    const webhook = createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        const signature = String(req.headers[SIGNATURE_HEADER])
        if (verifyWebhook({ secret: 'hush', body, signature, timestamp: String(req.headers[TIMESTAMP_HEADER]) })) notifications.push(JSON.parse(body))
        res.end()
      })
    })
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve))
    const queue = `se-delta-${Date.now()}`
    const recipe = spawn(process.execPath, [new URL('../examples/daily-delta.mjs', import.meta.url).pathname], {
      env: {
        ...process.env,
        QUEUE: queue,
        REDIS_URL: redisUrl,
        DATABASE_URL: databaseUrl(),
        S3_ENDPOINT: s3.endpoint,
        S3_BUCKET: s3.bucket,
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        CRON: '* * * * * *',
        TABLE: table,
        KEY_STAMP: 'time',
        WEBHOOK_URL: `http://127.0.0.1:${(webhook.address() as { port: number }).port}/`,
        WEBHOOK_SECRET: 'hush',
      },
    })
    const runs: Array<{ rows: number; key: string }> = []
    let errors = ''
    recipe.stderr.on('data', (d) => (errors += d))
    recipe.stdout.on('data', (d: Buffer) => {
      for (const [, rows, key] of d.toString().matchAll(/delta \S+: (\d+) rows -> (\S+)/g)) runs.push({ rows: Number(rows), key: key! })
    })
    const ranAfter = async (count: number) => expect.poll(() => runs.length, { timeout: 30_000, interval: 50 }).toBeGreaterThanOrEqual(count)
    const redis = newConnection()
    try {
      await ranAfter(1)
      // Changes between the ticks: new orders and updated ones, each landing in whichever run comes next.
      await pool.query(`insert into ${table} (id, status) select i, 'new' from generate_series(2001, 2100) i`)
      await ranAfter(runs.length + 1)
      await pool.query(`update ${table} set status = 'paid', updated_at = now() where id between 1 and 10`)
      // Two more runs: the second surely started after the last change.
      await ranAfter(runs.length + 2)
      recipe.kill('SIGTERM')
      await new Promise((resolve) => recipe.once('exit', resolve))
      expect(errors).not.toMatch(/failed/) // (the AWS SDK warns about Node 20 on standard error)
      expect(runs.length).toBeGreaterThanOrEqual(3)

      const exported: string[] = []
      for (const run of runs) {
        expect(run.key).toMatch(new RegExp(`^${table}/\\d{4}-\\d{2}-\\d{2}T[\\d-]+Z\\.csv\\.gz$`))
        const rows = parse(gunzipSync(await getBody(run.key)), { columns: true }) as Array<{ id: string; status: string }>
        expect(rows.length).toBe(run.rows)
        exported.push(...rows.map((row) => `${row.id}:${row.status}`))
      }
      // Every version once: 2,100 new orders, and 10 of them again as paid.
      expect(exported.length).toBe(2_110)
      expect(new Set(exported).size).toBe(2_110)
      expect(
        exported
          .filter((version) => version.endsWith(':paid'))
          .map((version) => Number(version.split(':')[0]))
          .sort((a, b) => a - b),
      ).toEqual(Array.from({ length: 10 }, (_, i) => i + 1))
      expect(JSON.parse((await redis.get(`${queue}:watermark:${table}-daily`))!)).toMatchObject({ version: 1 })
      await expect.poll(() => notifications.length).toBe(runs.length)
      expect(notifications.every((n) => n.event === 'export.completed' && typeof n.url === 'string')).toBe(true)
    } finally {
      recipe.kill('SIGKILL')
      webhook.close()
      const cleanup = new Queue(queue, { connection: newConnection() })
      await cleanup.obliterate({ force: true })
      await cleanup.close()
    }
  }, 90_000)
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
      expect(error.code).toBe('ERR_NOTIFY')
      expect(error.message).toBe('Webhook notification failed: the webhook answered 503')
    } finally {
      server.close()
    }
  })
})
