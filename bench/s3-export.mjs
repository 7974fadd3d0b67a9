// One export in this process: in-memory statements -> csv -> gzip(6) -> s3Sink | fileSink.
//   node bench/s3-export.mjs <s3|file> <rows> <endpoint | path>
import { S3Client } from '@aws-sdk/client-s3'
import { csv, exportStream, fileSink, fromIterable, s3Sink } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [target, rows, where] = process.argv.slice(2)
const client =
  target === 's3'
    ? new S3Client({ endpoint: where, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
    : undefined
const started = performance.now()
const result = await exportStream({
  source: fromIterable(statements(Number(rows))),
  format: csv(),
  gzip: { level: 6, ...(process.env.GZIP_THREADS ? { threads: Number(process.env.GZIP_THREADS) } : {}) },
  sink: client ? s3Sink({ client, bucket: 'bench', key: `statements-${rows}.csv.gz` }) : fileSink({ path: where }),
})
console.log(JSON.stringify({ ms: performance.now() - started, rows: result.rows, bytes: result.bytes, rssMb: process.resourceUsage().maxRSS / 1024 }))
