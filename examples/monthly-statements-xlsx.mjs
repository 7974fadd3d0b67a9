// Recipe: the same month of statements as monthly-statements.mjs, as an Excel workbook on S3
// with a presigned download link: a Summary sheet (totals per currency) before the Statements
// sheet, each from its own query (exportWorkbook); typed cells (numeric amounts as numbers,
// timestamptz as dates), a bold frozen header with filters, and a new sheet past Excel's 1,048,576
// rows. Constant memory.
//
//   DATABASE_URL=postgres://... S3_BUCKET=exports node examples/monthly-statements-xlsx.mjs [rows]
// With no table yet, it creates `monthly_statements` with [rows] synthetic rows (default 1,000,000).
import { S3Client } from '@aws-sdk/client-s3'
import pg from 'pg'
import { exportKey, exportWorkbook, postgresKeysetSource, postgresSource, presignDownload, s3Sink } from 'stream-export'
import { createStatementsTable } from './statements.mjs'

const rows = Number(process.argv[2] ?? 1_000_000)
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3 })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)
const bucket = process.env.S3_BUCKET ?? 'exports'

const {
  rows: [{ exists }],
} = await pool.query(`select to_regclass('monthly_statements') is not null as exists`)
if (!exists || process.env.RECREATE) await createStatementsTable(pool, 'monthly_statements', rows)

const key = exportKey({ prefix: 'statements', jobId: '2026-02', format: 'xlsx' }) // statements/2026-02.xlsx
const result = await exportWorkbook({
  sheets: [
    {
      name: 'Summary',
      source: postgresSource({
        pool,
        text: 'select currency, count(*) as statements, sum(amount) as total from monthly_statements group by currency order by currency',
        count: 'exact',
      }),
      columns: { currency: 'Currency', statements: 'Statements', total: 'Total' },
    },
    {
      name: 'Statements',
      source: postgresKeysetSource({ pool, table: 'monthly_statements', batchSize: 5000, count: 'estimate' }),
      columns: { id: 'ID', posted_at: 'Posted', user_name: 'Name', amount: 'Amount', currency: 'Currency', memo: 'Memo' },
    },
  ],
  sink: s3Sink({ client: s3, bucket, key }), // Content-Type: the spreadsheet's; no gzip: a workbook is a ZIP already
  onProgress: (p) => console.error(`${p.percent?.toFixed(1) ?? '?'}%  ${p.rows} rows  ${(p.bytes / 1e6).toFixed(1)} MB uploaded`),
})
const url = await presignDownload(s3, { bucket, key, expiresIn: 7 * 86_400, filename: 'statements-2026-02.xlsx' })
console.log(JSON.stringify({ rows: result.rows, bytes: result.bytes, sheets: result.sheets, key, url }))
await pool.end()
