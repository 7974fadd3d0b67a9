// Recipe: one big table exported by many workers into ONE object. Start this worker on as many
// machines (or processes) as you like; a job `{ table, shards }` is split into key ranges, each
// range a child job any worker takes, all of them parts of one S3 upload completed in key order.
// A worker that dies mid-range is followed by another that continues that range from its last part.
//
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://... S3_BUCKET=exports node examples/sharded-worker.mjs
//   (then, anywhere: new Queue('exports', { connection }).add('statements', { table: 'statements', shards: 8 }, { attempts: 3 }))
//   (format: 'csv' (default), 'jsonl' or 'json' (one JSON array); gzip: true (default) or false;
//   splitRows: n for parts of n rows and a manifest instead of one object)
//
// Needs BullMQ 5.58 or later (a failed shard fails the flow at once: continueParentOnFailure).
import { S3Client } from '@aws-sdk/client-s3'
import { Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import pg from 'pg'
import { csv, jsonArray, jsonl, planShards, postgresKeysetSource } from 'stream-export'
import { createShardedExportProcessor } from 'stream-export/bullmq'

const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null })
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)
const queueName = process.env.QUEUE ?? 'exports'
// The parent job adds its shards to the queue this worker takes jobs from.
const queue = new Queue(queueName, { connection })

const processor = createShardedExportProcessor({
  s3,
  bucket: process.env.S3_BUCKET ?? 'exports',
  queue,
  partSize: 5 * 1024 * 1024,
  // Key ranges of similar row counts, from a sample of the table (never a full scan), unless the
  // job gives its own (`ranges: [{ index: 0, until: 1000 }, { index: 1, after: 1000 }]`).
  plan: (job) => job.data.ranges ?? planShards({ pool, table: job.data.table, key: 'id', shards: job.data.shards ?? 8 }),
  // One range: from `after` (its start, or where a dead worker's attempt stopped) to its end.
  resolve: (job, { range, after }) => ({
    source: postgresKeysetSource({ pool, table: job.data.table, key: 'id', after, until: range.until, batchSize: 2000 }),
    format: { csv, jsonl, json: jsonArray }[job.data.format ?? 'csv'](),
    gzip: job.data.gzip ?? true,
    // `splitRows`: the export as parts of that many rows each and one manifest, instead of one object.
    ...(job.data.splitRows ? { split: { rows: job.data.splitRows } } : {}),
    // `partitionBy: 'currency'`: a file per currency from each shard (exports/<job id>/<currency>…)
    // and one manifest of them all.
    ...(job.data.partitionBy ? { partitionBy: job.data.partitionBy } : {}),
  }),
})

// lockDuration: how soon a dead worker's shard is noticed and taken by another worker.
const lockDuration = Number(process.env.LOCK_DURATION_MS ?? 30_000)
const worker = new Worker(queueName, processor, {
  connection,
  concurrency: Number(process.env.CONCURRENCY ?? 2),
  lockDuration,
  stalledInterval: lockDuration,
  maxStalledCount: Number(process.env.MAX_STALLED_COUNT ?? 5),
})
worker.on('failed', (job, error) => console.error(`${job?.name} ${job?.id} failed: ${error.message}`))
worker.on('completed', (job, result) => {
  if (result.url)
    console.log(`export ${job.id}: ${result.rows} rows in ${result.shards} shards -> ${result.location.key}${result.parts ? ` (${result.parts} parts)` : ''}`)
})
console.log('worker ready')

const stop = async () => {
  await worker.close()
  await queue.close()
  await pool.end()
  await connection.quit()
  s3.destroy()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
