// One export in this process: in-memory statements -> csv|jsonl -> [gzip(6)] -> file.
//   node bench/core-export.mjs <csv|jsonl> <rows> <out path> [--plain]
import { csv, exportStream, fileSink, fromIterable, jsonl } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [format, rows, path, plain] = process.argv.slice(2)
const started = performance.now()
const result = await exportStream({
  source: fromIterable(statements(Number(rows))),
  format: format === 'csv' ? csv() : jsonl(),
  gzip: plain === '--plain' ? false : { level: 6 },
  sink: fileSink({ path }),
})
console.log(
  JSON.stringify({
    ms: performance.now() - started,
    rows: result.rows,
    bytes: result.bytes,
    uncompressedBytes: result.uncompressedBytes,
    rssMb: process.resourceUsage().maxRSS / 1024,
  }),
)
