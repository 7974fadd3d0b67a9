// One Parquet export in this process: in-memory statements -> parquet(codec) -> file.
//   node bench/parquet-export.mjs <rows> <out path> [codec] [rowGroupSize]
import { exportStream, fileSink, fromIterable, parquet } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [rows, path, codec = 'SNAPPY', rowGroupSize = '100000'] = process.argv.slice(2)
const schema = [
  { name: 'id', type: 'INT64', nullable: false },
  { name: 'user_name', type: 'STRING' },
  { name: 'email', type: 'STRING' },
  { name: 'currency', type: 'STRING' },
  { name: 'amount', type: 'DECIMAL', precision: 14, scale: 2 },
  { name: 'posted_at', type: 'TIMESTAMP' },
  { name: 'memo', type: 'STRING' },
]
const started = performance.now()
const result = await exportStream({
  source: fromIterable(statements(Number(rows))),
  format: parquet({ schema, codec, rowGroupSize: Number(rowGroupSize) }),
  sink: fileSink({ path }),
})
console.log(JSON.stringify({ ms: performance.now() - started, rows: result.rows, bytes: result.bytes, rssMb: process.resourceUsage().maxRSS / 1024 }))
