// Recipe: every customer's monthly statements in one pass. One query ordered by customer ->
// a gzipped CSV per customer on S3, committed together by one manifest -> a presigned link per
// customer, each sent to a webhook (signed) when WEBHOOK_URL is set.
//
//   DATABASE_URL=postgres://... S3_BUCKET=exports [WEBHOOK_URL=https://... WEBHOOK_SECRET=...] \
//     node examples/statements-per-customer.mjs [rows] [customers]
// With no table yet, it creates `monthly_statements` with [rows] synthetic rows (default 1,000,000).
import { S3Client } from '@aws-sdk/client-s3'
import pg from 'pg'
import { csv, exportStream, postgresSource, presignDownload, s3Sink } from 'stream-export'
import { notifyWebhook } from 'stream-export/bullmq'
import { createStatementsTable } from './statements.mjs'

const rows = Number(process.argv[2] ?? 1_000_000)
const customers = Number(process.argv[3] ?? 1000)
const month = '2026-02'
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)
const bucket = process.env.S3_BUCKET ?? 'exports'

const {
  rows: [{ exists }],
} = await pool.query(`select to_regclass('monthly_statements') is not null as exists`)
if (!exists || process.env.RECREATE) await createStatementsTable(pool, 'monthly_statements', rows)

// Ordered by customer: one customer's file is written at a time, whatever their number.
const result = await exportStream({
  source: postgresSource({
    pool,
    text: `select 'cust-' || lpad((id % $1)::text, 5, '0') as customer, * from monthly_statements order by 1, id`,
    values: [customers],
    batchSize: 5000,
  }),
  format: csv({ excel: true }),
  gzip: true,
  sink: s3Sink({ client: s3, bucket, key: `statements/${month}/{customer}.csv.gz` }),
  partitionBy: 'customer',
})

// After the commit: a link per customer, and a webhook each (a receiver verifies it with verifyWebhook).
const notify = process.env.WEBHOOK_URL ? notifyWebhook({ url: process.env.WEBHOOK_URL, secret: process.env.WEBHOOK_SECRET ?? '' }) : undefined
const links = []
for (const partition of result.partitions) {
  const customer = String(partition.values.customer)
  const url = await presignDownload(s3, {
    bucket,
    key: partition.parts[0].location.key,
    expiresIn: 7 * 86_400,
    filename: `statements-${month}-${customer}.csv.gz`,
  })
  await notify?.({ event: 'export.completed', jobId: `${month}/${customer}`, rows: partition.rows, bytes: partition.bytes, url })
  links.push({ customer, rows: partition.rows, url })
}
console.log(JSON.stringify({ rows: result.rows, manifest: result.location.key, customers: links }))
await pool.end()
