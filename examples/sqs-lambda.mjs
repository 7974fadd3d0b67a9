// Recipe: exports of any size as an AWS Lambda fed by SQS. Each message body is
// { "jobId": "...", "table": "statements", "format": "csv" } (and "gzip": false for plain text). An export that nears the invocation's
// deadline ends its part at a row boundary and hands the rest to the next invocation with a
// continuation message on the same queue: one object, however many invocations it takes
// (docs/lambda.md). Failed messages are reported back (partial batch responses): SQS retries only
// those, and after `maxReceiveCount` receives moves them to the dead-letter queue, their upload aborted.
//
// Deploy: an SQS trigger with ReportBatchItemFailures and batch size 1, a redrive policy whose
// maxReceiveCount is MAX_RECEIVE_COUNT, a visibility timeout above the function's timeout.
import { S3Client } from '@aws-sdk/client-s3'
import { SQSClient } from '@aws-sdk/client-sqs'
import pg from 'pg'
import { csv, jsonl, postgresKeysetSource } from 'stream-export'
import { createLambdaExportHandler, postgresContinuationStore } from 'stream-export/lambda'

// Created once per Lambda container, reused by its invocations.
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
const local = (endpoint) => (endpoint ? { endpoint, region: process.env.AWS_REGION ?? 'us-east-1' } : {})
const s3 = new S3Client({ ...local(process.env.S3_ENDPOINT), forcePathStyle: Boolean(process.env.S3_ENDPOINT) })
const sqs = new SQSClient(local(process.env.SQS_ENDPOINT))

export const handler = createLambdaExportHandler({
  s3,
  bucket: process.env.S3_BUCKET ?? 'exports',
  sqs,
  queueUrl: process.env.QUEUE_URL,
  // The job's checkpoint between invocations, in the database the rows come from.
  store: postgresContinuationStore({ pool }),
  maxReceiveCount: Number(process.env.MAX_RECEIVE_COUNT ?? 3),
  // Hand on with a minute left (time to finish a 5 MiB part and store the checkpoint).
  marginMs: Number(process.env.EXPORT_MARGIN_MS ?? 60_000),
  // Called in every invocation with where the one before stopped (`after`).
  resolve: (job, { after }) => ({
    source: postgresKeysetSource({ pool, table: String(job.data.table), key: 'id', after }),
    format: job.data.format === 'jsonl' ? jsonl() : csv(),
    gzip: job.data.gzip !== false,
  }),
  onComplete: (result, job) => console.log(JSON.stringify({ jobId: job.id, rows: result.rows, key: result.location.key, url: result.url })),
})
