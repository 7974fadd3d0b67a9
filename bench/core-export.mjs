// One export in this process: in-memory rows -> csv|jsonl -> [gzip(6)] -> file.
//   node bench/core-export.mjs <csv|jsonl> <statements|short> <rows> <out path> [--plain]
import { csv, exportStream, fileSink, fromIterable, jsonl } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const BASE = Date.UTC(2026, 10, 1)
const STATUS = ['paid', 'open', 'void', 'late']
/** 7 short columns (~60 bytes of CSV): an id, a code, two numbers, a flag, a timestamp, a status. */
function* shortRows(n) {
  for (let i = 0; i < n; i++) {
    yield {
      id: i + 1,
      sku: `SKU-${i % 9973}`,
      qty: i % 17,
      price: ((i * 7919) % 100_000) / 100,
      paid: (i & 1) === 0,
      at: new Date(BASE + i * 1000),
      status: STATUS[i & 3],
    }
  }
}

const [format, kind, rows, path, plain] = process.argv.slice(2)
const started = performance.now()
const result = await exportStream({
  source: fromIterable(kind === 'short' ? shortRows(Number(rows)) : statements(Number(rows))),
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
