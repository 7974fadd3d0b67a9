// Recipe "customer exports end to end", the worker: every customer's monthly statements in one job
// (one query, a gzipped CSV per customer on S3, one manifest), recorded in the export log, an
// e-mail to each customer with a link to the download endpoint (server.mjs), and the expiry job
// that deletes each export when its time is up. Start as many as you like: jobs are shared, and
// the expiry job deletes each export once (docs/delivery.md).
//
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://... S3_BUCKET=exports \
//   SMTP_URL=smtp://127.0.0.1:2525 PUBLIC_URL=https://exports.example.com DOWNLOAD_SECRET=... \
//   EXPIRES_IN=2592000 node examples/customer-exports/worker.mjs
import { createHmac } from 'node:crypto'
import { S3Client } from '@aws-sdk/client-s3'
import { Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import nodemailer from 'nodemailer'
import pg from 'pg'
import { createExpiryProcessor, csv, exportEmail, exportLogMigration, notifyEmail, postgresExportLog, postgresSource } from 'stream-export'
import { createExportProcessor } from 'stream-export/bullmq'
import { createStatementsTable } from '../statements.mjs'

const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null })
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)
const bucket = process.env.S3_BUCKET ?? 'exports'
const publicUrl = process.env.PUBLIC_URL ?? 'http://127.0.0.1:3000'
const expiresIn = Number(process.env.EXPIRES_IN ?? 30 * 86_400)
const queueName = process.env.QUEUE ?? 'customer-exports'
const { CUSTOMERS = 'customers', STATEMENTS = 'monthly_statements', LOG_TABLE = 'stream_export_log' } = process.env // (trusted names)

// Demo data when there is none: customers (names as customers write them) and their statements.
// The export log's table is made by its migration: in your app, run exportLogMigration() there.
await pool.query(exportLogMigration(LOG_TABLE))
if (!(await pool.query(`select to_regclass($1) is not null as ok`, [CUSTOMERS])).rows[0].ok || process.env.RECREATE) {
  await pool.query(`drop table if exists ${CUSTOMERS}`)
  await pool.query(`create table ${CUSTOMERS} (id int primary key, name text not null, email text not null)`)
  await pool.query(`insert into ${CUSTOMERS} values
    (0, 'Café Zürich GmbH', 'billing@cafe-zuerich.example'), (1, 'Łódź Trading', 'accounts@lodz.example'),
    (2, 'ACME Corp', 'ap@acme.example'), (3, '東京 Books', 'keiri@tokyo-books.example'), (4, 'O''Brien & Sons', 'office@obrien.example')`)
  await createStatementsTable(pool, STATEMENTS, Number(process.env.ROWS ?? 100_000))
}
const log = postgresExportLog({ pool, table: LOG_TABLE })

// Each customer gets their own e-mail; the link goes to the download endpoint, which signs a
// fresh S3 link at each click (S3's own links last at most 7 days, the export may last longer).
// The link carries a token (an HMAC of the entry's id, server.mjs checks it): whoever has the
// e-mail may download the file, nobody can guess another customer's link.
const secret = process.env.DOWNLOAD_SECRET
if (!secret) throw new Error('Set DOWNLOAD_SECRET (the same for server.mjs): the key of the download links')
const downloadUrl = (entryId) =>
  `${publicUrl}/downloads/${encodeURIComponent(entryId)}?token=${createHmac('sha256', secret).update(entryId).digest('base64url')}`
const transport = nodemailer.createTransport({ url: process.env.SMTP_URL ?? 'smtp://127.0.0.1:2525', ignoreTLS: !process.env.SMTP_TLS })
const email = notifyEmail({
  transport,
  from: process.env.MAIL_FROM ?? 'Statements <statements@example.com>',
  to: async (n) => {
    if (!n.partition) return undefined // the job's own notification: nobody to e-mail
    const { rows } = await pool.query(`select email from ${CUSTOMERS} where name = $1`, [n.partition.customer])
    return rows[0]?.email
  },
  content: (n) => exportEmail({ ...n, url: downloadUrl(n.entryId), urlExpiresAt: n.expiresAt }),
})

const exportWorker = new Worker(
  queueName,
  createExportProcessor({
    s3,
    bucket,
    log,
    notify: email,
    // A job's data: { month: '2026-02', requestedBy: 'user-7' }.
    resolve: (job) => ({
      // Ordered by customer: one customer's file is written at a time, whatever their number.
      source: postgresSource({
        pool,
        text: `select c.name as customer, s.id, s.posted_at, s.currency, s.amount, s.memo
               from ${STATEMENTS} s join ${CUSTOMERS} c on c.id = s.id % 5 order by c.name, s.id`,
        batchSize: 5000,
      }),
      format: csv({ excel: true }),
      gzip: true,
      partitionBy: 'customer',
      key: 'statements/{period}/{jobId}/{customer}.csv.gz',
      filename: 'Statements {customer} {period}.csv.gz',
      labels: { period: job.data.month },
      expiresIn,
      requestedBy: job.data.requestedBy,
      fingerprint: { query: 'monthly_statements by customer', month: job.data.month },
    }),
  }),
  { connection, concurrency: 1 },
)
exportWorker.on('failed', (job, error) => console.error(`export ${job?.id} failed: ${error.message}`))

// The expiry job: one scheduler (upsert: every worker may declare it), run by whichever worker is free.
const expiryQueue = new Queue(`${queueName}-expiry`, { connection })
await expiryQueue.upsertJobScheduler('expire-exports', { every: Number(process.env.EXPIRY_EVERY_MS ?? 15 * 60_000) })
const expiryWorker = new Worker(`${queueName}-expiry`, createExpiryProcessor({ s3, log, notify: email }), { connection })
expiryWorker.on('completed', (_job, result) => result.deleted.length > 0 && console.log(`expired: ${result.deleted.join(', ')}`))
console.log('worker ready')

const stop = async () => {
  await Promise.all([exportWorker.close(), expiryWorker.close()])
  await expiryQueue.close()
  await pool.end()
  transport.close()
  await connection.quit()
  s3.destroy()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
