// Postgres suite: 1M statement rows, SELECT * ORDER BY id -> gzip(6) CSV file, against
// `psql -c "\copy (...) to stdout csv header" | gzip -6` in the same run.
import { rmSync, mkdirSync } from 'node:fs'
import pg from 'pg'
import { createStatementsTable, STATEMENTS_SQL } from '../examples/statements.mjs'
import { fmt, machine, median, runChild, timeShell, writeSection } from './lib.mjs'

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const env = { DATABASE_URL: url }
const table = 'bench_statements'
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const script = new URL('pg-export.mjs', import.meta.url).pathname
const out = `${dir}pg.csv.gz`

const pool = new pg.Pool({ connectionString: url, max: 1 })
await createStatementsTable(pool, table, 1_000_000)
const {
  rows: [{ version }],
} = await pool.query('select version()')
await pool.end()

const select = (n) => (n <= 1_000_000 ? `select * from ${table} where id <= ${n} order by id` : STATEMENTS_SQL.replace('$1::bigint', `${n}::bigint`))
const psql = (sql) => timeShell(`psql "${url}" -q -c "\\copy (${sql.replace(/\s+/g, ' ').replace(/"/g, '\\"')}) to stdout csv header" | gzip -6 > ${out}`)
const run = (kind, sql, batchSize, format = 'csv') => {
  const result = runChild(script, [kind, sql, out, batchSize ?? 1000], { ...env, FORMAT: format })
  rmSync(out)
  return result
}

// Each contender runs REPEAT times, in rounds (baseline, copy, cursor x3, baseline, ...), so a
// slow moment of the shared machine hits all of them; the table shows medians.
const repeat = Number(process.env.BENCH_REPEAT ?? 3)
const contenders = [
  ['postgresCopySource + gzip', () => run('copy', select(1_000_000))],
  ['postgresSource + csv + gzip (PostgreSQL writes the CSV)', () => run('text', select(1_000_000))],
  ['postgresSource + jsonl + gzip (PostgreSQL writes the JSON Lines)', () => run('text', select(1_000_000), 1000, 'jsonl')],
  ['postgresSource + transform + jsonl + gzip (row path)', () => run('rows', select(1_000_000), 1000, 'jsonl')],
  ...[1000, 5000].map((b) => [`postgresSource (batchSize ${b}) + transform + csv + gzip (row path)`, () => run('rows', select(1_000_000), b)]),
]
const baselines = []
const results = contenders.map(() => [])
for (let round = 0; round < repeat; round++) {
  baselines.push({ ms: psql(select(1_000_000)) })
  contenders.forEach(([, measure], i) => results[i].push(measure()))
}
const baselineMs = median(baselines).ms // psql and gzip: whole processes
const spread = `${fmt.s(Math.min(...baselines.map((b) => b.ms)))}-${fmt.s(Math.max(...baselines.map((b) => b.ms)))}`
const lines = []
const speed = contenders.map(([name], i) => [name, median(results[i]), results[i]])
for (const [name, r, all] of speed) {
  const range = `${fmt.s(Math.min(...all.map((a) => a.ms)))}-${fmt.s(Math.max(...all.map((a) => a.ms)))}`
  lines.push(
    `| ${name} | ${fmt.s(r.ms)} (${range}) | **${fmt.x(r.ms / baselineMs)}** | ${fmt.s(r.processMs)} | **${fmt.x(r.processMs / baselineMs)}** | ${fmt.int(r.rows / (r.ms / 1000))} | ${fmt.mb(r.bytes)} | ${r.rssMb.toFixed(0)} |`,
  )
  console.error(
    `${name}: ${fmt.s(r.ms)} s (${fmt.x(r.ms / baselineMs)}), process ${fmt.s(r.processMs)} s (${fmt.x(r.processMs / baselineMs)}), RSS ${r.rssMb.toFixed(0)} MB`,
  )
}

const memory = []
for (const n of [100_000, 1_000_000, 5_000_000]) {
  const cursor = run('rows', select(n), 1000)
  const text = run('text', select(n))
  const copyRun = run('copy', select(n))
  memory.push(
    `| ${fmt.int(n)} | ${n > 1_000_000 ? 'generate_series' : 'table'} | ${cursor.rssMb.toFixed(0)} | ${fmt.s(cursor.ms)} | ${text.rssMb.toFixed(0)} | ${fmt.s(text.ms)} | ${copyRun.rssMb.toFixed(0)} | ${fmt.s(copyRun.ms)} |`,
  )
  console.error(`${n}: row path RSS ${cursor.rssMb.toFixed(0)} MB, PostgreSQL-written CSV ${text.rssMb.toFixed(0)} MB, copy RSS ${copyRun.rssMb.toFixed(0)} MB`)
}

writeSection(
  'postgres',
  `
## PostgreSQL: 1,000,000 statement rows -> gzip(6) CSV file

Run: \`npm run bench -- postgres\` on ${machine()}, ${new Date().toISOString().slice(0, 10)};
${version.split(',')[0]} on the same machine (loopback), sharing its 2 cores with the export.
Table: the statements of \`examples/statements.mjs\` (7 columns: bigint id, text, char(3),
numeric(14,2), timestamptz, memo text with commas, quotes, newlines and NULLs), \`SELECT * ... ORDER BY id\`.
Baseline: \`psql -c "\\copy (...) to stdout csv header" | gzip -6 > file\`: median ${fmt.s(baselineMs)} s
(range ${spread} s). Every contender ran ${repeat} times in interleaved rounds; wall time is the
median (range in brackets), ratio = median export / median baseline; "process" is the whole
\`node\` process (start-up and imports included), as the baseline's pipeline is timed.
\`postgresSource\` + \`csv()\` or \`jsonl()\` without a transform lets PostgreSQL write the text
(docs/postgres.md), byte for byte what the row path writes; a transform sends every row through the
row path. The JSON Lines contenders are compared with the same CSV baseline (JSON Lines are larger: the keys are on every line).

| export | wall s | vs psql \\| gzip -6 | process s | vs psql \\| gzip -6 | rows/s | gzipped MB | peak RSS MB |
|---|---:|---:|---:|---:|---:|---:|---:|
${lines.join('\n')}

Peak RSS by row count (batchSize 1000; 5M rows come from \`generate_series\`):

| rows | source | row path: RSS MB | wall s | PostgreSQL writes the CSV: RSS MB | wall s | postgresCopySource: RSS MB | wall s |
|---:|---|---:|---:|---:|---:|---:|---:|
${memory.join('\n')}
`,
)
