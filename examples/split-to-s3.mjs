// Recipe: a big export as parts. 2,000,000 statement rows from Postgres -> gzipped CSV objects of
// 250,000 rows each on S3 (each a complete .csv.gz with its header) -> a manifest listing them
// with rows, bytes and SHA-256, written last: a consumer that finds the manifest finds every part.
//
//   DATABASE_URL=postgres://... S3_BUCKET=exports node examples/split-to-s3.mjs [rows] [rows per part]
// With no table yet, it creates `split_statements` with [rows] synthetic rows (default 2,000,000).
import { S3Client } from '@aws-sdk/client-s3'
import pg from 'pg'
import { csv, exportStream, postgresKeysetSource, s3Sink } from 'stream-export'
import { createStatementsTable } from './statements.mjs'

const rows = Number(process.argv[2] ?? 2_000_000)
const perPart = Number(process.argv[3] ?? 250_000)
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)

const {
  rows: [{ exists }],
} = await pool.query(`select to_regclass('split_statements') is not null as exists`)
if (!exists || process.env.RECREATE) await createStatementsTable(pool, 'split_statements', rows)

const result = await exportStream({
  source: postgresKeysetSource({ pool, table: 'split_statements', batchSize: 5000, count: 'estimate' }),
  format: csv(),
  gzip: true,
  // The key names the parts (statements/2026-11-23-<run>-00001.csv.gz, ...) and the manifest
  // (statements/2026-11-23.manifest.json).
  sink: s3Sink({ client: s3, bucket: process.env.S3_BUCKET ?? 'exports', key: 'statements/2026-11-23.csv.gz' }),
  split: { rows: perPart },
  onProgress: (p) => console.error(`${p.percent?.toFixed(1) ?? '?'}%  ${p.rows} rows  ${(p.bytes / 1e6).toFixed(1)} MB`),
})
console.log(JSON.stringify(result.manifest, null, 2))
await pool.end()
