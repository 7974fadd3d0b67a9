// Recipe: the export worker. Runs apart from the API: it takes export jobs from a BullMQ queue,
// streams each one from Postgres to S3 (resuming after a crash), and answers with a presigned URL.
// Scale out by starting more of these, or raising CONCURRENCY.
//
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://... S3_BUCKET=exports node examples/bullmq-worker.mjs
//
// A job's data: { table: 'statements', format: 'csv' | 'jsonl', gzip: true }. Enqueue with
// attempts > 1 (see api-enqueue.mjs): a worker that dies mid-export is followed by another
// attempt that continues the same S3 upload from its last completed part.
// With `partitionBy: 'customer'`: an object per customer (exports/<job id>/<customer>.csv.gz) and
// one manifest; a retry keeps the customers already written and goes on with the next.
// Azure Blob Storage instead of S3: AZURE_STORAGE_CONNECTION_STRING (with the account key, to sign
// links) and AZURE_CONTAINER; a crashed export continues from its staged blocks (docs/azure.md).
import { S3Client } from '@aws-sdk/client-s3'
import { Queue, QueueEvents, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import pg from 'pg'
import { csv, jsonl, postgresKeysetSource } from 'stream-export'
import { abortFailedExport, createExportProcessor, notifyWebhook } from 'stream-export/bullmq'

// BullMQ takes an ioredis client (it opens the extra connections it needs from it).
const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null })
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 })
// S3_ENDPOINT for an S3-compatible store (MinIO, R2, the tests' server); AWS otherwise.
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)

const azure = process.env.AZURE_STORAGE_CONNECTION_STRING
const container = azure
  ? (await import('@azure/storage-blob')).BlobServiceClient.fromConnectionString(azure).getContainerClient(process.env.AZURE_CONTAINER ?? 'exports')
  : undefined
const store = container ? { container } : { s3, bucket: process.env.S3_BUCKET ?? 'exports' }

const processor = createExportProcessor({
  ...store,
  partSize: 5 * 1024 * 1024,
  progressIntervalMs: Number(process.env.PROGRESS_INTERVAL_MS ?? 1000),
  // `after` is where a crashed attempt stopped: the keyset source continues from there.
  resolve: (job, { after }) => ({
    // Partitioned: rows ordered by the partition column first, so that each customer's rows come together.
    source: postgresKeysetSource({
      pool,
      table: job.data.table,
      key: job.data.partitionBy ? [job.data.partitionBy, 'id'] : 'id',
      after,
      batchSize: 2000,
      count: 'estimate',
    }),
    format: job.data.format === 'jsonl' ? jsonl() : csv(),
    gzip: job.data.gzip ?? true,
    partitionBy: job.data.partitionBy,
  }),
  notify: process.env.WEBHOOK_URL ? notifyWebhook({ url: process.env.WEBHOOK_URL, secret: process.env.WEBHOOK_SECRET ?? '' }) : undefined,
})

const queueName = process.env.QUEUE ?? 'exports'
// A job that finally fails for any reason (out of attempts, or stalled too often, when no
// processor runs to clean up) must not leave its multipart upload behind: abort it.
const queue = new Queue(queueName, { connection })
// QueueEvents blocks its connection: it gets one of its own (closed in stop, like every connection
// we pass in: BullMQ closes only the connections it opened itself). It reads the events from this
// moment (Redis's clock), not from whenever its first read happens: the worker's first stalled
// check, as it starts, may fail a job before then.
const eventsConnection = connection.duplicate()
const [seconds, micros] = await connection.time()
const lastEventId = `${Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)}-0`
const queueEvents = new QueueEvents(queueName, { connection: eventsConnection, lastEventId })
queueEvents.on('failed', async ({ jobId }) => {
  const job = await queue.getJob(jobId)
  if (job) await abortFailedExport(container ?? s3, job).catch((error) => console.error(`export ${jobId}: upload not aborted: ${error.message}`))
})

// lockDuration: how soon BullMQ notices a dead worker's job (its lock expires) and retries it.
// maxStalledCount: how many times a job may lose its worker (SIGKILL, OOM, a node drained) and
// still be resumed. BullMQ's default of 1 fails a job at its second stall without running it.
const lockDuration = Number(process.env.LOCK_DURATION_MS ?? 30_000)
const worker = new Worker(queueName, processor, {
  connection,
  concurrency: Number(process.env.CONCURRENCY ?? 2),
  lockDuration,
  stalledInterval: lockDuration,
  maxStalledCount: Number(process.env.MAX_STALLED_COUNT ?? 5),
})
worker.on('failed', (job, error) => console.error(`export ${job?.id} failed: ${error.message}`))
worker.on('completed', (job, result) => console.log(`export ${job.id}: ${result.rows} rows -> ${result.location.key}`))
console.log('worker ready')

// SIGTERM (a deploy, a scale-down): finish the running exports, close every connection, exit.
const stop = async () => {
  await worker.close()
  await queueEvents.close()
  await queue.close()
  await pool.end()
  await eventsConnection.quit()
  await connection.quit()
  s3.destroy()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
