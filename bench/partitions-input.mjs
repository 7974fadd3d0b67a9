// The input CSV of bench/partitions.mjs: node bench/partitions-input.mjs <rows> <path>
import { csv, exportStream, fileSink, fromIterable } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [rows, path] = process.argv.slice(2)
const perAccount = Number(rows) / 1000
function* accountRows(count) {
  let i = 0
  for (const row of statements(count)) yield { account: `a${String(Math.floor(i++ / perAccount)).padStart(5, '0')}`, ...row }
}
const result = await exportStream({ source: fromIterable(accountRows(Number(rows))), format: csv(), sink: fileSink({ path }) })
console.log(JSON.stringify({ rows: result.rows }))
