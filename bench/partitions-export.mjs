// One export in this process, for bench/partitions.mjs.
//   node bench/partitions-export.mjs <ours|ours-csv|duckdb> <csv|parquet> <rows> <partitions|0> <out dir> [<input csv>]
// ours: in-memory statements with an `account` column (rows ordered by it); ours-csv: the same rows
// read back from <input csv> by csvSource; duckdb: COPY (SELECT * FROM read_csv(<input csv>)) ...
// PARTITION_BY (account). partitions 0: one unpartitioned file.
import { readdir } from 'node:fs/promises'
import { DuckDBInstance } from '@duckdb/node-api'
import { csv, csvSource, exportStream, fileSink, fromIterable, parquet } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [kind, format, rowsText, partitionsText, dir, input] = process.argv.slice(2)
const rows = Number(rowsText)
const partitions = Number(partitionsText)
const perAccount = partitions > 0 ? rows / partitions : rows
const ext = format === 'csv' ? 'csv.gz' : 'parquet'
function* accountRows(count) {
  let i = 0
  for (const row of statements(count)) yield { account: `a${String(Math.floor(i++ / perAccount)).padStart(5, '0')}`, ...row }
}

const started = performance.now()
let result
if (kind === 'duckdb') {
  const instance = await DuckDBInstance.create(':memory:')
  const connection = await instance.connect()
  const options = format === 'csv' ? 'FORMAT csv, COMPRESSION gzip, HEADER' : 'FORMAT parquet'
  const target = partitions > 0 ? `'${dir}' (${options}, PARTITION_BY (account))` : `'${dir}/all.${ext}' (${options})`
  await connection.run(`COPY (SELECT * FROM read_csv('${input}', header = true)) TO ${target}`)
  const files = (await readdir(dir, { recursive: true })).filter((name) => name.endsWith(ext)).length
  result = { rows, parts: { length: files } }
} else {
  const source = kind === 'ours-csv' ? csvSource({ path: input }) : fromIterable(accountRows(rows))
  result = await exportStream({
    source,
    format: format === 'csv' ? csv() : parquet(),
    ...(format === 'csv' ? { gzip: true } : {}),
    sink: fileSink({ path: partitions > 0 ? `${dir}/{account}.${ext}` : `${dir}/all.${ext}` }),
    ...(partitions > 0 ? { partitionBy: 'account' } : {}),
  })
}
console.log(
  JSON.stringify({
    ms: performance.now() - started,
    rows: result.rows,
    files: result.parts?.length ?? 1,
    cpuMs: (process.resourceUsage().userCPUTime + process.resourceUsage().systemCPUTime) / 1000,
    rssMb: process.resourceUsage().maxRSS / 1024,
  }),
)
