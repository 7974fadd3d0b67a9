// Recipe: the export as an AWS Lambda fed by SQS. Each message body is
// { "jobId": "...", "table": "statements", "format": "csv" }; the handler streams the table to
// S3 and reports failed messages back (partial batch responses), so SQS retries only those.
// A Lambda run is limited to 15 minutes: for longer exports use the BullMQ worker, which resumes.
//
// Locally: node -e "import('./examples/sqs-lambda.mjs').then(m => m.handler({ Records: [...] }))"
import { S3Client } from '@aws-sdk/client-s3'
import pg from 'pg'
import { csv, exportKey, exportStream, jsonl, postgresKeysetSource, presignDownload, s3Sink } from 'stream-export'

// Created once per Lambda container, reused by its invocations.
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)
const bucket = process.env.S3_BUCKET ?? 'exports'

export async function handler(event) {
  const batchItemFailures = []
  const results = []
  for (const record of event.Records ?? []) {
    try {
      const { jobId, table, format = 'csv' } = JSON.parse(record.body)
      const stage = format === 'jsonl' ? jsonl() : csv()
      const key = exportKey({ jobId, format: stage, gzip: true }) // a retried message overwrites its own object
      const result = await exportStream({
        source: postgresKeysetSource({ pool, table }),
        format: stage,
        gzip: true,
        sink: s3Sink({ client: s3, bucket, key }),
      })
      results.push({ jobId, rows: result.rows, url: await presignDownload(s3, { bucket, key }) })
    } catch (error) {
      console.error(`message ${record.messageId}: ${error.code ?? ''} ${error.message}`)
      batchItemFailures.push({ itemIdentifier: record.messageId })
    }
  }
  return { batchItemFailures, results }
}
