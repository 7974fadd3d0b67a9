// Parallel gzip suite: 1M statement rows from Postgres -> gzip(6) file, single-threaded zlib
// against the parallel stage, with `psql \copy | gzip -6` in the same run.
import { mkdirSync, rmSync } from 'node:fs'
import pg from 'pg'
import { createStatementsTable } from '../examples/statements.mjs'
import { fmt, machine, median, runChild, timeShell, writeSection } from './lib.mjs'

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const table = 'bench_statements'
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const out = `${dir}pgzip.csv.gz`
const script = new URL('pg-export.mjs', import.meta.url).pathname
const repeat = Number(process.env.BENCH_REPEAT ?? 3)

const pool = new pg.Pool({ connectionString: url, max: 1 })
await createStatementsTable(pool, table, 1_000_000)
await pool.end()

const sql = `select * from ${table} order by id`
const psql = () => ({ ms: timeShell(`psql "${url}" -q -c "\\copy (${sql}) to stdout csv header" | gzip -6 > ${out}`) })
const run = (kind, threads) => () => {
  const result = runChild(script, [kind, sql, out, 1000], { DATABASE_URL: url, GZIP_THREADS: threads })
  rmSync(out)
  return result
}
const contenders = [
  ['psql \\copy \\| gzip -6', psql],
  ['postgresCopySource + gzip, 1 thread', run('copy', 1)],
  ['postgresCopySource + gzip, 2 threads', run('copy', 2)],
  ['postgresSource + transform + csv + gzip (row path), 1 thread', run('rows', 1)],
  ['postgresSource + transform + csv + gzip (row path), 2 threads', run('rows', 2)],
]
const results = contenders.map(() => [])
for (let round = 0; round < repeat; round++) contenders.forEach(([, measure], i) => results[i].push(measure()))
const baseline = median(results[0]).ms
const lines = contenders.map(([name], i) => {
  const r = median(results[i])
  const range = `${fmt.s(Math.min(...results[i].map((a) => a.ms)))}-${fmt.s(Math.max(...results[i].map((a) => a.ms)))}`
  console.error(`${name}: ${fmt.s(r.ms)} s (${fmt.x(r.ms / baseline)})`)
  return `| ${name} | ${fmt.s(r.ms)} (${range}) | **${fmt.x(r.ms / baseline)}** | ${r.bytes ? fmt.mb(r.bytes) : ''} | ${r.rssMb ? r.rssMb.toFixed(0) : ''} |`
})

writeSection(
  'pgzip',
  `
## Parallel gzip: Postgres 1,000,000 statement rows -> gzip(6) file

Run: \`npm run bench -- pgzip\` on ${machine()}, ${new Date().toISOString().slice(0, 10)};
PostgreSQL on the same machine. Same table and query as the PostgreSQL section
(\`SELECT * ... ORDER BY id\`, batchSize 1000). "1 thread" is zlib's own Gzip stream, "2 threads"
the parallel stage (256 KiB blocks, what \`gzip: true\` uses on this machine). Every contender ran
${repeat} times in interleaved rounds; medians (range in brackets); ratio to the psql pipeline.

| export | wall s | vs psql \\| gzip -6 | gzipped MB | peak RSS MB |
|---|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
