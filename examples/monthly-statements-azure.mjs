// Recipe: the fintech job on Azure. A month of statement rows from Postgres -> gzipped CSV in an
// Azure Blob Storage container -> read back once and checked against the export's CRC64NVME (Azure
// checks each block's MD5 as it arrives, not the whole blob) -> a SAS link for the customer, 7 days.
//
//   DATABASE_URL=postgres://... AZURE_STORAGE_CONNECTION_STRING='...;AccountKey=...' AZURE_CONTAINER=exports \
//     node examples/monthly-statements-azure.mjs [rows]
// With no table yet, it creates `monthly_statements` with [rows] synthetic rows (default 1,000,000).
// The connection string must hold the account key: the link is signed with it.
import { BlobServiceClient } from '@azure/storage-blob'
import pg from 'pg'
import { azureBlobSink, azureDownloadUrl, csv, exportKey, exportStream, postgresKeysetSource, verifyExport } from 'stream-export'
import { createStatementsTable } from './statements.mjs'

const rows = Number(process.argv[2] ?? 1_000_000)
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
const container = BlobServiceClient.fromConnectionString(process.env.AZURE_STORAGE_CONNECTION_STRING).getContainerClient(
  process.env.AZURE_CONTAINER ?? 'exports',
)
await container.createIfNotExists()

const {
  rows: [{ exists }],
} = await pool.query(`select to_regclass('monthly_statements') is not null as exists`)
if (!exists || process.env.RECREATE) await createStatementsTable(pool, 'monthly_statements', rows)

const blobName = exportKey({ prefix: 'statements', jobId: '2026-02', format: 'csv', gzip: true })
const result = await exportStream({
  source: postgresKeysetSource({ pool, table: 'monthly_statements', batchSize: 5000, count: 'estimate' }),
  format: csv({ excel: true }), // BOM, CRLF and formula escaping: customers open it in Excel
  gzip: true,
  sink: azureBlobSink({ containerClient: container, blobName }),
  onProgress: (p) => console.error(`${p.percent?.toFixed(1) ?? '?'}%  ${p.rows} rows  ${(p.bytes / 1e6).toFixed(1)} MB uploaded`),
})
// One read of the blob (drop it where that egress matters): the link goes out only for the bytes exported.
const check = await verifyExport({ target: { container: container.containerName, blob: blobName }, container, expected: result.checksum })
if (!check.ok) throw new Error(`The stored blob is not what was exported: ${check.objects[0].problems.join('; ')}`)
const url = await azureDownloadUrl(container, { blobName, expiresIn: 7 * 86_400, filename: 'statements-2026-02.csv.gz' })
console.log(JSON.stringify({ rows: result.rows, bytes: result.bytes, blob: blobName, checksum: result.checksum.value, url }))
await pool.end()
