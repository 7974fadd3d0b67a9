// Parquet suite: in-memory rows -> parquet -> file, peak RSS by row group size. Rows are cut by
// `rowGroupBytes` (the values' rough size) or `rowGroupSize` (rows), whichever comes first; "rows
// only" is the former behaviour (100,000-row groups whatever their bytes). Narrow rows are the
// statements (~100 bytes of values); wide rows add a ~2 KB text column. Each run in its own
// process; medians of interleaved rounds.
import { mkdirSync, rmSync } from 'node:fs'
import { fmt, machine, median, runChild, writeSection } from './lib.mjs'

const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const script = new URL('parquet-export.mjs', import.meta.url).pathname
const ROWS_ONLY = 1e15 // rowGroupBytes that never ends a group: the former behaviour
const sizes = [ROWS_ONLY, 8_000_000, 4_000_000, 2_000_000, 1_000_000]
const runs = [
  ...sizes.map((bytes) => ({ data: 'statements', rows: 1_000_000, codec: 'SNAPPY', bytes })),
  ...sizes.map((bytes) => ({ data: 'wide', rows: 200_000, codec: 'SNAPPY', bytes })),
  { data: 'statements', rows: 100_000, codec: 'SNAPPY' },
  { data: 'statements', rows: 1_000_000, codec: 'ZSTD' },
  { data: 'statements', rows: 1_000_000, codec: 'GZIP' },
]
const once = [
  { data: 'statements', rows: 5_000_000, codec: 'SNAPPY', bytes: ROWS_ONLY },
  { data: 'statements', rows: 5_000_000, codec: 'SNAPPY' },
]
const results = runs.map(() => [])
for (let round = 0; round < rounds; round++) {
  const order = runs.map((_, i) => i)
  if (round % 2) order.reverse()
  for (const i of order) {
    const { data, rows, codec, bytes } = runs[i]
    results[i].push(runChild(script, [rows, `${dir}bench.parquet`, codec, 100_000, bytes ?? '', data]))
  }
}
const all = [...runs.map((run, i) => ({ ...run, result: median(results[i]) }))]
for (const run of once) all.push({ ...run, result: runChild(script, [run.rows, `${dir}bench.parquet`, run.codec, 100_000, run.bytes ?? '', run.data]) })
rmSync(`${dir}bench.parquet`, { force: true })
const groupBytes = (bytes) => (bytes === ROWS_ONLY ? 'rows only' : bytes === undefined ? 'default' : `${fmt.int(bytes / 1e6)} MB`)
const lines = all.map(({ data, rows, codec, bytes, result }) => {
  console.error(`${data} ${rows} ${codec} ${groupBytes(bytes)}: ${fmt.s(result.ms)} s, RSS ${result.rssMb.toFixed(0)} MB`)
  return `| ${data} | ${fmt.int(rows)} | ${codec} | ${groupBytes(bytes)} | ${fmt.s(result.ms)} | ${fmt.int(result.rows / (result.ms / 1000))} | ${fmt.mb(result.bytes)} | ${result.rssMb.toFixed(0)} |`
})
writeSection(
  'parquet',
  `
## Parquet: in-memory rows -> parquet -> file

Run: \`npm run bench -- parquet\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
Rows: the statements of \`examples/statements.mjs\` with an explicit schema (INT64 id, four
STRING columns, DECIMAL(14,2) amount, TIMESTAMP posted_at); "wide" adds a ~2 KB STRING column.
Written by hyparquet-writer one row group at a time, in a child process, \`rowGroupSize\` 100,000;
a group also ends at \`rowGroupBytes\` of values ("rows only": never, the former behaviour).
Medians of ${rounds} interleaved rounds; the 5,000,000-row runs once.

| rows | count | codec | rowGroupBytes | wall s | rows/s | file MB | peak RSS MB |
|---|---:|---|---|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
