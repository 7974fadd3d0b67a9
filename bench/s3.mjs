// S3 suite: in-memory statements -> csv -> gzip(6) -> s3Sink on an S3-compatible server on loopback
// (s3rver, with the test suite's middleware for what s3rver lacks: ListMultipartUploads, ListParts,
// AbortMultipartUpload), against the same export to fileSink and as a resumable export job.
import { mkdirSync, rmSync } from 'node:fs'
import { fmt, machine, median, runChildAsync, startTestS3, writeSection } from './lib.mjs'

const server = await startTestS3('bench')
const { endpoint } = server
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const script = new URL('s3-export.mjs', import.meta.url).pathname
const repeat = Number(process.env.BENCH_REPEAT ?? 3)

// Children run asynchronously: this process is the S3 server they talk to.
const toFile = async (n) => {
  const result = await runChildAsync(script, ['file', n, `${dir}s3-bench.csv.gz`])
  rmSync(`${dir}s3-bench.csv.gz`)
  return result
}
const toS3 = (n) => runChildAsync(script, ['s3', n, endpoint])
const toResumable = (n) => runChildAsync(script, ['resumable', n, endpoint])

const file = []
const s3 = []
const resumable = []
for (let round = 0; round < repeat; round++) {
  file.push(await toFile(1_000_000))
  s3.push(await toS3(1_000_000))
  resumable.push(await toResumable(1_000_000))
}
const f = median(file)
const s = median(s3)
const job = median(resumable)
console.error(`1M: file ${fmt.s(f.ms)} s, s3 ${fmt.s(s.ms)} s (${fmt.x(s.ms / f.ms)}), resumable ${fmt.s(job.ms)} s (${fmt.x(job.ms / s.ms)} of s3)`)

const memory = []
for (const n of [100_000, 1_000_000, 5_000_000]) {
  const r = n === 1_000_000 ? s : await toS3(n)
  memory.push(`| ${fmt.int(n)} | ${fmt.mb(r.bytes)} | ${fmt.s(r.ms)} | ${fmt.int(r.rows / (r.ms / 1000))} | ${r.rssMb.toFixed(0)} |`)
  console.error(`${n}: s3 RSS ${r.rssMb.toFixed(0)} MB`)
}
await server.close()

writeSection(
  's3',
  `
## S3: in-memory statements -> csv -> gzip(6) -> s3Sink, against the same export to fileSink

Run: \`npm run bench -- s3\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
The S3 server is s3rver (an S3-compatible HTTP server, storing parts on the local disk) with the
test suite's middleware (test/fixtures/s3-server.ts) on loopback, in the benchmark's parent process; the export runs in a child process with the real AWS
SDK and the default sink options (8 MiB parts, 4 in flight: a stated bound of 40 MiB of buffers).
Each target ran ${repeat} times in interleaved rounds; medians.

| 1,000,000 rows | wall s | ratio to fileSink | peak RSS MB |
|---|---:|---:|---:|
| fileSink | ${fmt.s(f.ms)} | 1.00x | ${f.rssMb.toFixed(0)} |
| s3Sink | ${fmt.s(s.ms)} | **${fmt.x(s.ms / f.ms)}** | ${s.rssMb.toFixed(0)} |
| resumable export job (\`createExportProcessor\`, keyed rows) | ${fmt.s(job.ms)} | **${fmt.x(job.ms / f.ms)}** (${fmt.x(job.ms / s.ms)} of s3Sink) | ${job.rssMb.toFixed(0)} |

The resumable job runs the same pipeline into one multipart upload in segments: parts of 8 MiB cut
between rows, a gzip member each (on every core), a checkpoint saved after each part, and a
presigned URL at the end.

Peak RSS of the S3 export by row count:

| rows | gzipped MB | wall s | rows/s | peak RSS MB |
|---:|---:|---:|---:|---:|
${memory.join('\n')}
`,
)
