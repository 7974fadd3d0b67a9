// One ETL run in this process: CSV file -> mask e-mails -> JSONL -> gzip(6) -> file.
//   node bench/etl-export.mjs <input.csv> <output.jsonl.gz>
import { csvSource, exportStream, fileSink, jsonl } from 'stream-export'

const [input, output] = process.argv.slice(2)
const mask = (email) => `${email[0]}***${email.slice(email.lastIndexOf('@'))}`
const source = csvSource({ path: input })
const started = performance.now()
const result = await exportStream({
  source,
  transform: (row) => ({ ...row, email: mask(row.email) }),
  format: jsonl(),
  gzip: { level: 6, ...(process.env.GZIP_THREADS ? { threads: Number(process.env.GZIP_THREADS) } : {}) },
  sink: fileSink({ path: output }),
})
console.log(
  JSON.stringify({
    ms: performance.now() - started,
    rows: result.rows,
    inputBytes: source.bytesRead,
    bytes: result.bytes,
    rssMb: process.resourceUsage().maxRSS / 1024,
  }),
)
