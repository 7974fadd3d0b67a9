// One export in this process: 1M in-memory statements -> csv -> gzip(6) -> one file, or split.
//   node bench/split-export.mjs <rows> <out path> [<rows per part>]
import { csv, exportStream, fileSink, fromIterable } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [rows, path, perPart] = process.argv.slice(2)
const started = performance.now()
const result = await exportStream({
  source: fromIterable(statements(Number(rows))),
  format: csv(),
  gzip: { level: 6 },
  sink: fileSink({ path }),
  ...(perPart ? { split: { rows: Number(perPart) } } : {}),
})
console.log(
  JSON.stringify({
    ms: performance.now() - started,
    rows: result.rows,
    bytes: result.bytes,
    parts: result.parts?.length ?? 1,
    cpuMs: (process.resourceUsage().userCPUTime + process.resourceUsage().systemCPUTime) / 1000,
    rssMb: process.resourceUsage().maxRSS / 1024,
  }),
)
