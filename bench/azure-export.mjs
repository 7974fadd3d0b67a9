// One export in this process: in-memory statements -> csv -> gzip(6) -> an Azure block blob, by
// azureBlobSink or by the SDK's own BlockBlobClient.uploadStream (same blocks: 8 MiB, 4 at once).
//   node bench/azure-export.mjs <sink|sink-nochecksum|uploadstream> <rows> <connection string>
import { PassThrough } from 'node:stream'
import { BlobServiceClient } from '@azure/storage-blob'
import { azureBlobSink, csv, exportStream, fromIterable } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [target, rows, connectionString] = process.argv.slice(2)
const container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient('bench')
const blobName = `statements-${target}-${rows}.csv.gz`
const started = performance.now()
const stages = { source: fromIterable(statements(Number(rows))), format: csv(), gzip: true }
let result
if (target.startsWith('sink'))
  result = await exportStream({
    ...stages,
    sink: azureBlobSink({ containerClient: container, blobName, ...(target === 'sink-nochecksum' && { checksum: false }) }),
  })
else {
  const bytes = new PassThrough({ highWaterMark: 64 * 1024 })
  const upload = container.getBlockBlobClient(blobName).uploadStream(bytes, 8 * 1024 * 1024, 4, { blobHTTPHeaders: { blobContentType: 'application/gzip' } })
  ;[result] = await Promise.all([exportStream({ ...stages, sink: bytes }), upload])
}
const { userCPUTime, systemCPUTime, maxRSS } = process.resourceUsage()
const ms = performance.now() - started
console.log(JSON.stringify({ ms, cpuMs: (userCPUTime + systemCPUTime) / 1000, rows: result.rows, bytes: result.bytes, rssMb: maxRSS / 1024 }))
