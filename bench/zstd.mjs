// zstd suite: 1M statement rows from Postgres -> zstd(3) file, against `psql \copy | zstd -3` (and
// the gzip pipeline for scale) in the same run.
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, statSync } from 'node:fs'
import pg from 'pg'
import { createStatementsTable } from '../examples/statements.mjs'
import { fmt, machine, median, runChild, timeShell, writeSection } from './lib.mjs'

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const table = 'bench_statements'
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const out = `${dir}zstd.csv.zst`
const script = new URL('pg-export.mjs', import.meta.url).pathname
const repeat = Number(process.env.BENCH_REPEAT ?? 3)

const pool = new pg.Pool({ connectionString: url, max: 1 })
await createStatementsTable(pool, table, 1_000_000)
await pool.end()

const zstdVersion = /v[\d.]+/.exec(execFileSync('zstd', ['--version']).toString())?.[0] ?? ''
const sql = `select * from ${table} order by id`
const shell = (compressor) => () => {
  const ms = timeShell(`psql "${url}" -q -c "\\copy (${sql}) to stdout csv header" | ${compressor} > ${out}`)
  const bytes = statSync(out).size
  rmSync(out)
  return { ms, bytes }
}
const run = (kind, env) => () => {
  const result = runChild(script, [kind, sql, out, 1000], { DATABASE_URL: url, ...env })
  rmSync(out)
  return result
}
const contenders = [
  ['psql \\copy \\| zstd -3', shell('zstd -3 -q')],
  ['psql \\copy \\| zstd -3 -T2', shell('zstd -3 -T2 -q')],
  ['psql \\copy \\| gzip -6', shell('gzip -6')],
  ['postgresCopySource + zstd(3)', run('copy', { COMPRESSION: 'zstd' })],
  ['postgresSource + csv + zstd(3) (PostgreSQL writes the CSV)', run('text', { COMPRESSION: 'zstd' })],
  ['postgresSource + transform + csv + zstd(3) (row path)', run('rows', { COMPRESSION: 'zstd' })],
  ['postgresCopySource + gzip(6), 2 threads', run('copy', { GZIP_THREADS: 2 })],
]
const results = contenders.map(() => [])
for (let round = 0; round < repeat; round++) contenders.forEach(([, measure], i) => results[i].push(measure()))
const baseline = median(results[0]).ms
const lines = contenders.map(([name], i) => {
  const r = median(results[i])
  const range = `${fmt.s(Math.min(...results[i].map((a) => a.ms)))}-${fmt.s(Math.max(...results[i].map((a) => a.ms)))}`
  console.error(`${name}: ${fmt.s(r.ms)} s (${fmt.x(r.ms / baseline)})`)
  return `| ${name} | ${fmt.s(r.ms)} (${range}) | **${fmt.x(r.ms / baseline)}** | ${fmt.mb(r.bytes)} | ${r.rssMb ? r.rssMb.toFixed(0) : ''} |`
})

writeSection(
  'zstd',
  `
## zstd: Postgres 1,000,000 statement rows -> zstd(3) file

Run: \`npm run bench -- zstd\` on ${machine()}, ${new Date().toISOString().slice(0, 10)};
PostgreSQL on the same machine; the zstd command ${zstdVersion}. Same table and query as the
PostgreSQL section (\`SELECT * ... ORDER BY id\`, batchSize 1000). Node's zstd runs on one thread
of libuv's pool (\`-T2\` is the zstd command on both cores, which the library does not offer: see
docs/gzip.md#zstd). Every contender ran ${repeat} times in interleaved rounds; medians (range
in brackets); ratio to \`psql \\copy | zstd -3\`.

| export | wall s | vs psql \\| zstd -3 | compressed MB | peak RSS MB |
|---|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
