// The main job on an embedded default: 1,000,000 synthetic monthly-statement rows -> CSV -> gzip
// -> out/statements.csv.gz, with a live progress line. No database needed.
//   npm run demo            (or: node examples/demo.mjs 200000 for fewer rows)
import { mkdir } from 'node:fs/promises'
import { csv, exportStream, fileSink, fromIterable } from 'stream-export'
import { statements } from './statements.mjs'

const total = Number(process.argv[2] ?? 1_000_000)
const path = 'out/statements.csv.gz'
await mkdir('out', { recursive: true })

const controller = new AbortController()
process.once('SIGINT', () => controller.abort(new Error('interrupted')))

const line = (p) =>
  `${p.rows.toLocaleString('en')} / ${total.toLocaleString('en')} rows (${p.percent.toFixed(1)}%)  ` +
  `${Math.round(p.rowsPerSecond).toLocaleString('en')} rows/s  ${(p.bytes / 1e6).toFixed(1)} MB written  ` +
  `ETA ${((p.etaMs ?? 0) / 1000).toFixed(1)} s`

const result = await exportStream({
  source: fromIterable(statements(total)),
  format: csv({ columns: ['id', 'user_name', 'email', 'currency', 'amount', 'posted_at', 'memo'] }),
  gzip: true,
  sink: fileSink({ path }),
  totalRows: total,
  progressIntervalMs: 250,
  onProgress: (p) => process.stdout.write(process.stdout.isTTY ? `\r${line(p)}\x1b[K` : `${line(p)}\n`),
  signal: controller.signal,
})
if (process.stdout.isTTY) process.stdout.write('\n')

console.log(`exported ${result.rows.toLocaleString('en')} rows to ${result.location.path}`)
console.log(`  ${(result.bytes / 1e6).toFixed(1)} MB gzipped (${(result.uncompressedBytes / 1e6).toFixed(1)} MB of CSV)`)
console.log(`  ${(result.durationMs / 1000).toFixed(2)} s, ${Math.round(result.rows / (result.durationMs / 1000)).toLocaleString('en')} rows/s`)
console.log(`  peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`)
