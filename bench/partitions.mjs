// Partitions suite: 1M statement rows into 1,000 partitions (CSV + gzip, and Parquet), against the
// same export unpartitioned and against DuckDB's COPY ... PARTITION_BY over the same rows from a CSV
// file; peak RSS at 10 and at 10,000 partitions. Interleaved rounds, medians.
import { mkdirSync, rmSync } from 'node:fs'
import { fmt, machine, median, runChild, writeSection } from './lib.mjs'

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000)
const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
const data = new URL('./.data/partitions/', import.meta.url).pathname
const script = new URL('./partitions-export.mjs', import.meta.url).pathname
const input = `${data}input.csv`
rmSync(data, { recursive: true, force: true })
mkdirSync(data, { recursive: true })
// The rows as a CSV file, for DuckDB and for csvSource (the same bytes both read).
runChild(new URL('./partitions-input.mjs', import.meta.url).pathname, [rows, input])

const contenders = [
  ['csv', 'ours', 0, 'stream-export, one file'],
  ['csv', 'ours', 1000, 'stream-export, 1,000 partitions'],
  ['csv', 'ours-csv', 1000, 'stream-export from the CSV file, 1,000 partitions'],
  ['csv', 'duckdb', 0, 'DuckDB COPY from the CSV file, one file'],
  ['csv', 'duckdb', 1000, 'DuckDB COPY from the CSV file, 1,000 partitions'],
  ['parquet', 'ours', 0, 'stream-export, one file'],
  ['parquet', 'ours', 1000, 'stream-export, 1,000 partitions'],
  ['parquet', 'ours-csv', 1000, 'stream-export from the CSV file, 1,000 partitions'],
  ['parquet', 'duckdb', 0, 'DuckDB COPY from the CSV file, one file'],
  ['parquet', 'duckdb', 1000, 'DuckDB COPY from the CSV file, 1,000 partitions'],
  ['csv', 'ours', 10, 'stream-export, 10 partitions (memory)'],
  ['csv', 'ours', 10_000, 'stream-export, 10,000 partitions (memory)'],
]
const results = contenders.map(() => [])
for (let round = 0; round < rounds; round++) {
  for (const [i, [format, kind, partitions]] of contenders.entries()) {
    const out = `${data}out`
    rmSync(out, { recursive: true, force: true })
    mkdirSync(out, { recursive: true })
    results[i].push(runChild(script, [kind, format, rows, partitions, out, input]))
  }
}
rmSync(data, { recursive: true, force: true })
// Each tool against its own one-file export of the same format.
const base = (format, kind) => median(results[contenders.findIndex(([f, k, p]) => f === format && k === (kind === 'duckdb' ? 'duckdb' : 'ours') && p === 0)]).ms
const lines = contenders.map(([format, kind, , name], i) => {
  const r = median(results[i])
  const cpu = median(results[i].map((run) => ({ ...run, ms: run.cpuMs }))).cpuMs
  console.error(`${format} ${name}: ${fmt.s(r.ms)} s (${fmt.x(r.ms / base(format, kind))}), RSS ${r.rssMb.toFixed(0)} MB`)
  return `| ${format === 'csv' ? 'CSV + gzip' : 'Parquet'} | ${name} | ${fmt.int(r.files)} | ${fmt.s(r.ms)} | ${fmt.x(r.ms / base(format, kind))} | ${fmt.s(cpu)} | ${r.rssMb.toFixed(0)} |`
})
writeSection(
  'partitions',
  `## Partitions: ${fmt.int(rows)} rows -> 1,000 partitions, against one file and DuckDB

Run: \`npm run bench -- partitions\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}; DuckDB
through \`@duckdb/node-api\`. Rows: the statements of \`examples/statements.mjs\` with an \`account\`
column, ordered by it (1,000 accounts of 1,000 rows), in memory; "from the CSV file" reads the same
rows back from a CSV file with \`csvSource\` (text values), as DuckDB's \`COPY (SELECT * FROM
read_csv(...)) TO ... (PARTITION_BY (account))\` does. Each export in its own child process;
medians of ${rounds} interleaved rounds; "vs one file" is the ratio to the same tool's unpartitioned
export of the same format (stream-export's from the in-memory rows); CPU is user + system time
(DuckDB runs on both cores, stream-export's row path on one plus gzip or Parquet encoder threads);
peak RSS is the child's.

| format | export | files | wall s | vs one file | CPU s | peak RSS MB |
|---|---|---:|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
