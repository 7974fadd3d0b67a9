// File ETL suite (issue "File ETL at engine speed"): a CSV file of 1M statement rows converted by
// whole processes, each against the engine a user would otherwise reach for, in the same run:
// CSV -> csv.gz (the CLI) against `gzip -6`; CSV -> Parquet and CSV -> JSONL.gz (the CLI) against
// DuckDB (`COPY (SELECT * FROM read_csv(...)) TO ...`, @duckdb/node-api). Wall time and peak RSS
// by /usr/bin/time; medians of ROUNDS (default 3), the tools interleaved.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, statSync } from 'node:fs'
import pg from 'pg'
import { createStatementsTable } from '../examples/statements.mjs'
import { fmt, machine, writeSection } from './lib.mjs'

const ROWS = Number(process.env.BENCH_FILE_ETL_ROWS ?? 1_000_000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const input = `${dir}file-etl.csv`
const cli = new URL('../dist/cli.js', import.meta.url).pathname
const duck = new URL('./duckdb-copy.mjs', import.meta.url).pathname
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

// The input: the statements of examples/statements.mjs as plain CSV.
execFileSync(process.execPath, [new URL('./core-export.mjs', import.meta.url).pathname, 'csv', 'statements', ROWS, input, '--plain'], { stdio: 'inherit' })
const inputMb = statSync(input).size / 1e6
// The same rows in PostgreSQL, for Parquet from Postgres.
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const table = 'bench_file_etl'
const pool = new pg.Pool({ connectionString: url, max: 1 })
await createStatementsTable(pool, table, ROWS)
await pool.end()
const query = `select * from ${table} order by id`
/** Wall seconds and peak RSS (MB) of a command, by GNU time. */
function measure(command, args) {
  const run = spawnSync('/usr/bin/time', ['-f', '%e %M', command, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
  if (run.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${run.stderr}`)
  const [seconds, kb] = run.stderr.trim().split('\n').at(-1).split(' ').map(Number)
  return { ms: seconds * 1000, rssMb: kb / 1024 }
}

const out = (name) => `${dir}file-etl-out.${name}`
const pipelines = [
  {
    name: 'CSV -> csv.gz',
    ours: () => measure(process.execPath, [cli, '--from', input, '--to', out('csv.gz')]),
    baseline: 'gzip -6',
    theirs: () => measure('sh', ['-c', `gzip -6 -c '${input}' > '${out('gzip.gz')}'`]),
  },
  {
    name: 'CSV -> Parquet',
    ours: () => measure(process.execPath, [cli, '--from', input, '--to', out('parquet')]),
    baseline: 'DuckDB',
    theirs: () => measure(process.execPath, [duck, input, out('duck.parquet'), 'FORMAT parquet']),
  },
  {
    // DuckDB cannot read PostgreSQL here (its postgres extension is downloaded at run time): psql
    // writes the rows as CSV, then DuckDB converts the file; the two steps are timed together.
    name: 'Postgres -> Parquet',
    ours: () => measure(process.execPath, [cli, '--from', url, '--query', query, '--to', out('pg.parquet')]),
    baseline: 'psql \\copy + DuckDB',
    theirs: () =>
      measure('sh', [
        '-c',
        `psql "${url}" -q -c "\\copy (${query}) to '${out('pg.csv')}' csv header" && "${process.execPath}" ${duck} ${out('pg.csv')} ${out('duck-pg.parquet')} 'FORMAT parquet'`,
      ]),
  },
  {
    name: 'CSV -> JSONL.gz',
    ours: () => measure(process.execPath, [cli, '--from', input, '--to', out('jsonl.gz')]),
    baseline: 'DuckDB',
    theirs: () => measure(process.execPath, [duck, input, out('duck.jsonl.gz'), 'FORMAT json, COMPRESSION gzip']),
  },
]

const lines = []
for (const pipeline of pipelines) {
  const ours = []
  const theirs = []
  for (let round = 0; round < ROUNDS; round++) {
    ours.push(pipeline.ours())
    theirs.push(pipeline.theirs())
  }
  const o = median(ours.map((r) => r.ms))
  const t = median(theirs.map((r) => r.ms))
  const rss = Math.max(...ours.map((r) => r.rssMb))
  const theirRss = Math.max(...theirs.map((r) => r.rssMb))
  console.error(`${pipeline.name}: ${fmt.s(o)} s (${rss.toFixed(0)} MB) vs ${pipeline.baseline} ${fmt.s(t)} s (${theirRss.toFixed(0)} MB): ${fmt.x(o / t)}`)
  lines.push(`| ${pipeline.name} | ${fmt.s(o)} | ${rss.toFixed(0)} | ${pipeline.baseline} | ${fmt.s(t)} | ${theirRss.toFixed(0)} | **${fmt.x(o / t)}** |`)
}
for (const name of ['csv.gz', 'gzip.gz', 'parquet', 'duck.parquet', 'pg.parquet', 'pg.csv', 'duck-pg.parquet', 'jsonl.gz', 'duck.jsonl.gz'])
  rmSync(out(name), { force: true })
rmSync(input)

writeSection(
  'file-etl',
  `
## File ETL: a CSV file converted, against gzip -6 and DuckDB

Run: \`npm run bench -- file-etl\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
Input: ${fmt.int(ROWS)} statements of \`examples/statements.mjs\` as one plain CSV file (${fmt.mb(inputMb * 1e6)} MB; memo text
with commas, quotes and newlines). Each conversion is a whole process (start-up and imports
included): ours the CLI (\`stream-export --from file.csv --to out.<ext>\`: the CSV's cells read as
text, as the CLI does without \`--infer\`), against \`gzip -6\` on the same file, and DuckDB 1.5
(\`@duckdb/node-api\`: \`COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet | json,
COMPRESSION gzip)\`, which infers the columns' types). Wall time and peak RSS by \`/usr/bin/time\`;
medians of ${ROUNDS} rounds, the two tools alternating. Postgres -> Parquet reads the same rows from a
PostgreSQL table (\`select * ... order by id\`, numeric and timestamptz columns typed) on this
machine; DuckDB cannot read PostgreSQL here (its extension is downloaded when first used), so its
baseline is \`psql \\copy\` to a CSV file and DuckDB's conversion of it, timed together. The goals of the file-ETL issue: csv.gz <= 1.5x
\`gzip -6\`, Parquet <= 3x DuckDB and < 150 MB, JSONL.gz <= 1.2x DuckDB.

| pipeline | ours s | ours peak RSS MB | baseline | baseline s | baseline peak RSS MB | ratio |
|---|---:|---:|---|---:|---:|---:|
${lines.join('\n')}
`,
)
