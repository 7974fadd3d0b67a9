// In-process shards suite: 1M statements in PostgreSQL -> gzipped CSV file, read by one cursor
// (postgresSource) or by postgresShardedSource with 1, 2 and 4 shards (worker threads, one
// snapshot), against `psql \copy | gzip -6`, in the same rounds; both when PostgreSQL's COPY writes
// the CSV and when every row goes through JavaScript. Then a latency-bound case: every message the
// client sends PostgreSQL held 50 ms by a proxy (a database far away), cursor pages of 1,000 rows.
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { createStatementsTable } from '../examples/statements.mjs'
import { fmt, machine, median, runChildAsync, startDelayProxy, timeShell, writeSection } from './lib.mjs'

const url = process.env.DATABASE_URL
if (!url) throw new Error('DATABASE_URL is required (the shards-local suite exports a PostgreSQL table)')
const table = 'bench_local_shards'
const ROWS = 1_000_000
const LATENCY_ROWS = 400_000
const DELAY_MS = 50
const repeat = Number(process.env.BENCH_REPEAT ?? 3)
const script = new URL('./shards-local-export.mjs', import.meta.url).pathname
const out = join(tmpdir(), `bench-local-shards-${process.pid}.csv.gz`)

const pool = new pg.Pool({ connectionString: url, max: 1 })
await createStatementsTable(pool, table, ROWS)
await createStatementsTable(pool, `${table}_far`, LATENCY_ROWS)
await pool.end()

const exportWith = (mode, path, env = {}, tableName = table) => runChildAsync(script, [mode, path, tableName, out], env)
const psql = () => ({ ms: timeShell(`psql "${url}" -q -c "\\copy (select * from ${table} order by id) to stdout csv header" | gzip -6 > /dev/null`) })

const modes = [
  ['one cursor (postgresSource)', 'serial'],
  ['postgresShardedSource, 1 shard', '1'],
  ['postgresShardedSource, 2 shards', '2'],
  ['postgresShardedSource, 4 shards', '4'],
]
const paths = [
  ['COPY writes the CSV', 'copy'],
  ['rows through JavaScript', 'rows'],
]
const baselines = []
const results = new Map()
for (let round = 0; round < repeat; round++) {
  baselines.push(psql())
  for (const [, path] of paths) {
    for (const [label, mode] of modes) {
      const r = await exportWith(mode, path)
      if (r.rows !== ROWS) throw new Error(`expected ${ROWS} rows, got ${r.rows}`)
      results.set(`${path} ${mode}`, [...(results.get(`${path} ${mode}`) ?? []), r])
      console.error(`round ${round + 1}: ${path}, ${label}: ${fmt.s(r.ms)} s`)
    }
  }
}
const base = median(baselines)
const table1 = paths.flatMap(([pathLabel, path]) =>
  modes.map(([label, mode]) => {
    const r = median(results.get(`${path} ${mode}`))
    return `| ${pathLabel} | ${label} | ${fmt.s(r.ms)} | ${fmt.x(r.ms / base.ms)} | ${fmt.int(ROWS / (r.ms / 1000))} | ${r.cpu.toFixed(1)} | ${Math.round(r.rssMb)} | ${fmt.mb(r.spilledBytes)} |`
  }),
)

const far = await startDelayProxy(url, DELAY_MS)
const latency = []
for (const [label, mode] of modes.filter(([, mode]) => mode !== '1')) {
  const r = await exportWith(mode, 'rows', { DATABASE_URL: far.url }, `${table}_far`)
  if (r.rows !== LATENCY_ROWS) throw new Error(`expected ${LATENCY_ROWS} rows, got ${r.rows}`)
  latency.push({ label, ...r })
  console.error(`latency-bound: ${label}: ${fmt.s(r.ms)} s`)
}
await far.close()
// The projection: CPU seconds per million rows of the whole process with 4 shards, rows through JavaScript.
const perMillion = median(results.get('rows 4')).cpu / (ROWS / 1_000_000)

writeSection(
  'shards-local',
  `
## In-process shards: one table, every core of one machine

1,000,000 statements in PostgreSQL (\`${table}\`) -> gzipped CSV file, each export in its own
process: one cursor (\`postgresSource\`), or \`postgresShardedSource\` (worker threads, one
connection each, one snapshot, rows handed on in key order), against \`psql \\copy ... csv | gzip -6\`
in the same rounds; medians of ${repeat}. "COPY writes the CSV": \`csv()\`, which PostgreSQL's COPY
writes byte for byte (in each shard too). "Rows through JavaScript": \`csv({ nullValue: 'NULL' })\`,
which COPY cannot write, so every row is decoded and encoded in JavaScript (by each shard's thread
when sharded). CPU: seconds the exporting process used (every thread), not PostgreSQL's. Spilled:
what later shards read ahead of their turn and kept on disk (8 MiB each in memory).

Machine: ${machine()}. **Two cores shared with PostgreSQL**: where PostgreSQL itself does most of
the work (COPY), more readers cannot go faster here; the JavaScript row path is where shards spread work.

| path | source | seconds | vs psql \\| gzip -6 (${fmt.s(base.ms)} s) | rows/s | CPU s | peak RSS MB | spilled MB |
|---|---|---|---|---|---|---|---|
${table1.join('\n')}

Latency-bound: ${fmt.int(LATENCY_ROWS)} rows through JavaScript (cursor pages of 1,000 rows), every message the client
sends held ${DELAY_MS} ms by a proxy on the way to PostgreSQL, as a database in another region gives; one run each.
Waiting dominates: each shard waits for its own pages, so the shards overlap their waits.

| source | seconds | speed-up |
|---|---|---|
${latency.map((r) => `| ${r.label} | ${fmt.s(r.ms)} | ${fmt.x(latency[0].ms / r.ms)} |`).join('\n')}

**Projection, not a measurement:** with 4 shards the exporting process used ${perMillion.toFixed(1)} CPU seconds per
million rows on the JavaScript row path (decoding, CSV, handing on, gzip). A 16-core machine would
then export about ${fmt.int((16 * 1_000_000) / perMillion)} rows/s, if PostgreSQL (on its own machine) serves 16
readers that fast: a 500M-row table in about ${Math.round(500_000_000 / ((16 * 1_000_000) / perMillion) / 60)} minutes.
`,
)
