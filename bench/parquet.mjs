// Parquet suite: in-memory statements -> parquet (default row groups of 100,000) -> file.
import { mkdirSync, rmSync } from 'node:fs'
import { fmt, machine, runChild, writeSection } from './lib.mjs'

const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const script = new URL('parquet-export.mjs', import.meta.url).pathname
const lines = []
const runs = [
  [100_000, 'SNAPPY', 100_000],
  [1_000_000, 'SNAPPY', 100_000],
  [5_000_000, 'SNAPPY', 100_000],
  [1_000_000, 'ZSTD', 100_000],
  [1_000_000, 'GZIP', 100_000],
  [1_000_000, 'SNAPPY', 50_000],
  [1_000_000, 'SNAPPY', 25_000],
  [5_000_000, 'SNAPPY', 25_000],
]
for (const [n, codec, rowGroupSize] of runs) {
  const run = runChild(script, [n, `${dir}bench.parquet`, codec, rowGroupSize])
  rmSync(`${dir}bench.parquet`)
  console.error(`${codec} ${n} (${rowGroupSize}): ${fmt.s(run.ms)} s, ${fmt.int(run.rows / (run.ms / 1000))} rows/s, RSS ${run.rssMb.toFixed(0)} MB`)
  lines.push(
    `| ${fmt.int(n)} | ${codec} | ${fmt.int(rowGroupSize)} | ${fmt.s(run.ms)} | ${fmt.int(run.rows / (run.ms / 1000))} | ${fmt.mb(run.bytes)} | ${run.rssMb.toFixed(0)} |`,
  )
}
writeSection(
  'parquet',
  `
## Parquet: in-memory statements -> parquet -> file

Run: \`npm run bench -- parquet\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
Rows: the statements of \`examples/statements.mjs\` with an explicit schema (INT64 id, four
STRING columns, DECIMAL(14,2) amount, TIMESTAMP posted_at), written by hyparquet-writer one row
group at a time, in a child process. The default row group is 100,000 rows.

| rows | codec | row group | wall s | rows/s | file MB | peak RSS MB |
|---:|---|---:|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
