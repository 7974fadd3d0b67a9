// One Parquet export in this process: in-memory rows -> parquet(codec) -> file.
//   node bench/parquet-export.mjs <rows> <out path> [codec] [rowGroupSize] [rowGroupBytes] [statements|wide]
// `wide` rows are the statements with a ~2 KB text column: twenty times the bytes per row.
import { exportStream, fileSink, fromIterable, parquet } from 'stream-export'
import { statementRow } from '../examples/statements.mjs'

const [rows, path, codec = 'SNAPPY', rowGroupSize = '100000', rowGroupBytes, data = 'statements'] = process.argv.slice(2)
const schema = [
  { name: 'id', type: 'INT64', nullable: false },
  { name: 'user_name', type: 'STRING' },
  { name: 'email', type: 'STRING' },
  { name: 'currency', type: 'STRING' },
  { name: 'amount', type: 'DECIMAL', precision: 14, scale: 2 },
  { name: 'posted_at', type: 'TIMESTAMP' },
  { name: 'memo', type: 'STRING' },
  ...(data === 'wide' ? [{ name: 'body', type: 'STRING' }] : []),
]
function* generate(count) {
  for (let i = 0; i < count; i++) {
    const row = statementRow(i)
    if (data === 'wide') row.body = `${row.memo} ${row.email} `.repeat(40).slice(0, 2000) + i
    yield row
  }
}
const started = performance.now()
const result = await exportStream({
  source: fromIterable(generate(Number(rows))),
  format: parquet({ schema, codec, rowGroupSize: Number(rowGroupSize), ...(rowGroupBytes ? { rowGroupBytes: Number(rowGroupBytes) } : {}) }),
  sink: fileSink({ path }),
})
console.log(JSON.stringify({ ms: performance.now() - started, rows: result.rows, bytes: result.bytes, rssMb: process.resourceUsage().maxRSS / 1024 }))
