// One export in this process: in-memory statements -> csv -> gzip(6) -> s3Sink | fileSink, or the
// same as a resumable export job (createExportProcessor: checkpointed segments of one upload).
//   node bench/s3-export.mjs <s3|file|resumable> <rows> <endpoint | path>
// CHECKSUM=none turns the full-object checksum off (the integrity suite's baseline); GZIP=none
// exports plain CSV.
import { S3Client } from '@aws-sdk/client-s3'
import { csv, exportStream, fileSink, fromIterable, s3Sink } from 'stream-export'
import { createExportProcessor } from 'stream-export/bullmq'
import { statements } from '../examples/statements.mjs'

const [target, rows, where] = process.argv.slice(2)
const client =
  target !== 'file'
    ? new S3Client({ endpoint: where, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
    : undefined
const started = performance.now()
// The child's answer to the suite: wall and CPU time, rows, bytes, peak RSS.
function report({ rows, bytes }) {
  const { userCPUTime, systemCPUTime, maxRSS } = process.resourceUsage()
  const ms = performance.now() - started
  console.log(JSON.stringify({ ms, cpuMs: (userCPUTime + systemCPUTime) / 1000, rows, bytes, rssMb: maxRSS / 1024 }))
}
if (target === 'resumable') {
  // A job as BullMQ hands it over; its checkpoint is kept in memory (BullMQ keeps it in Redis).
  const job = {
    id: `resumable-${rows}`,
    data: {},
    attemptsMade: 0,
    opts: {},
    updateProgress: async () => {},
    updateData: async (data) => void (job.data = data),
  }
  const processor = createExportProcessor({
    s3: client,
    bucket: 'bench',
    resolve: () => ({ source: Object.assign(fromIterable(statements(Number(rows))), { keyOf: (row) => row.id }), format: csv(), gzip: true }),
  })
  report(await processor(job))
  process.exit(0)
}
const checksum = process.env.CHECKSUM === 'none' ? false : undefined
const result = await exportStream({
  source: fromIterable(statements(Number(rows))),
  format: csv(),
  gzip: process.env.GZIP === 'none' ? false : { level: 6, ...(process.env.GZIP_THREADS ? { threads: Number(process.env.GZIP_THREADS) } : {}) },
  sink: client ? s3Sink({ client, bucket: 'bench', key: `statements-${rows}.csv.gz`, checksum }) : fileSink({ path: where, checksum }),
})
report(result)
