// Recipe: a daily feed of changed orders. BullMQ's own job scheduler enqueues a job at 02:00 (UTC);
// the worker exports the orders written since the previous run to s3://$S3_BUCKET/orders/<day>.csv.gz
// (<day>: yesterday), stores the watermark only once the upload has completed, and posts the
// presigned link to a webhook. A failed run is retried; a run that never stored its watermark is
// repeated by the next one (at least once per file, never a row skipped: docs/incremental.md).
//
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://... S3_BUCKET=exports \
//   WEBHOOK_URL=https://... WEBHOOK_SECRET=... node examples/daily-delta.mjs
//
// CRON: when to run (default '0 0 2 * * *': seconds, minutes, hours, ...). TABLE (default orders)
// with an `id` key and an `updated_at` column for the order of the rows. KEY_STAMP=time names the
// objects by the run's time instead of the day (for schedules more frequent than daily).
import { S3Client } from '@aws-sdk/client-s3'
import { Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import pg from 'pg'
import { csv, postgresIncrementalSource, redisWatermarkStore } from 'stream-export'
import { createExportProcessor, notifyWebhook } from 'stream-export/bullmq'

const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null })
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)
const table = process.env.TABLE ?? 'orders'
const feed = `${table}-daily`
const queueName = process.env.QUEUE ?? 'daily-delta'
// The watermark beside the queue; postgresWatermarkStore({ pool }) keeps it in the database instead.
const store = redisWatermarkStore({ redis: connection, prefix: `${queueName}:watermark:` })

// One scheduler, created or updated at every start (upsert: no duplicates across deploys).
const queue = new Queue(queueName, { connection })
await queue.upsertJobScheduler(
  feed,
  { pattern: process.env.CRON ?? '0 0 2 * * *', tz: 'UTC' },
  { name: 'delta', data: { table }, opts: { attempts: 3, backoff: { type: 'exponential', delay: 10_000 } } },
)

const day = 86_400_000
const objectName = (job) =>
  process.env.KEY_STAMP === 'time' ? new Date(job.timestamp).toISOString().replace(/[:.]/g, '-') : new Date(job.timestamp - day).toISOString().slice(0, 10) // the job at 02:00 on the 24th holds the 23rd

const processor = createExportProcessor({
  s3,
  bucket: process.env.S3_BUCKET ?? 'exports',
  resolve: async (job) => ({
    source: postgresIncrementalSource({ pool, table: job.data.table, orderBy: 'updated_at', after: await store.load(feed) }),
    format: csv(),
    gzip: true,
    key: `${job.data.table}/${objectName(job)}.csv.gz`,
    // Saved after the upload has completed, before the job completes.
    watermark: { store, name: feed },
  }),
  notify: process.env.WEBHOOK_URL ? notifyWebhook({ url: process.env.WEBHOOK_URL, secret: process.env.WEBHOOK_SECRET ?? '' }) : undefined,
})

// One run at a time: the next run starts from the watermark the previous one stored.
const worker = new Worker(queueName, processor, { connection, concurrency: 1 })
worker.on('completed', (job, result) => console.log(`delta ${job.id}: ${result.rows} rows -> ${result.location.key}`))
worker.on('failed', (job, error) => console.error(`delta ${job?.id} failed: ${error.message}`))
console.log(`scheduled ${feed}`)

const stop = async () => {
  await worker.close()
  await queue.close()
  await pool.end()
  await connection.quit()
  s3.destroy()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
