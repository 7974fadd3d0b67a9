// The buffer-everything version users write first: every row in an array, one string, gzipSync.
//   node bench/naive-export.mjs <rows> <out path>
import { writeFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { stringify } from 'csv-stringify/sync'
import { statements } from '../examples/statements.mjs'

const [rows, path] = process.argv.slice(2)
const started = performance.now()
const all = [...statements(Number(rows))]
const text = stringify(all, { header: true, cast: { date: (d) => d.toISOString(), boolean: String } })
writeFileSync(path, gzipSync(text, { level: 6 }))
console.log(JSON.stringify({ ms: performance.now() - started, rows: all.length, rssMb: process.resourceUsage().maxRSS / 1024 }))
