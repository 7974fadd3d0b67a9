// Delivery suite: what the export log costs at scale. A log table already holding 300,000 entries
// (a year of exports), then one partitioned export of 10,000 partitions recorded (10,001 entries,
// one transaction), recorded again (a retry of the same commit), and the expiry processor's lease
// of 500 expired entries. PostgreSQL on the same machine; medians of ROUNDS (default 3).
import pg from 'pg'
import { exportLogMigration, postgresExportLog } from '../dist/index.js'
import { fmt, machine, writeSection } from './lib.mjs'

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const EARLIER = 300_000
const PARTITIONS = 10_000
const table = 'se_bench_export_log'
const pool = new pg.Pool({ connectionString: url, max: 2 })
const log = postgresExportLog({ pool, table })
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function fill() {
  await pool.query(`drop table if exists ${table}`)
  await pool.query(exportLogMigration(table))
  for (let i = 0; i < EARLIER; i += 10_000)
    await pool.query(
      `insert into ${table} (id, export_id, job_id, run, format, rows, bytes, bucket, keys, created_at, expires_at)
       select 'q/' || g, 'q/' || g, g::text, 'r', 'csv.gz', 1000, 50000, 'exports', array['exports/' || g || '.csv.gz'],
              now() - interval '1 day', now() + interval '30 days' from generate_series($1::int, $2::int) g`,
      [i, i + 9_999],
    )
  await pool.query(`analyze ${table}`)
}

function entries(run, at) {
  const base = {
    exportId: 'statements/new',
    jobId: 'new',
    run,
    requestedBy: 'user-7',
    fingerprint: null,
    format: 'csv.gz',
    rows: 1,
    bytes: 1,
    checksum: null,
    bucket: 'exports',
    labels: { month: '2026-12' },
    createdAt: at,
    expiresAt: new Date(at.getTime() + 60_000),
    notify: false,
  }
  const all = [{ ...base, id: 'statements/new', partition: null, keys: ['statements/2026-12/partitions.csv.gz.manifest.json'], filename: null }]
  for (let i = 0; i < PARTITIONS; i++)
    all.push({
      ...base,
      id: `statements/new/c${i}`,
      partition: { customer: `c${i}` },
      keys: [`statements/2026-12/c${i}-${run}-00001.csv.gz`],
      filename: `c${i}.csv.gz`,
    })
  return all
}

const times = { record: [], again: [], lease: [] }
for (let round = 0; round < ROUNDS; round++) {
  await fill()
  const at = new Date()
  const recorded = entries('run1', at)
  let t = performance.now()
  await log.record(recorded)
  times.record.push(performance.now() - t)
  t = performance.now()
  await log.record(recorded)
  times.again.push(performance.now() - t)
  t = performance.now()
  const leased = await log.lease('expired', { now: new Date(at.getTime() + 120_000), limit: 500, leaseMs: 600_000 }, async () => ({ deletedAt: new Date() }))
  times.lease.push(performance.now() - t)
  if (leased.length !== 500) throw new Error(`leased ${leased.length}, not 500`)
  console.error(`round ${round + 1}: record ${fmt.s(times.record.at(-1))} s, again ${fmt.s(times.again.at(-1))} s, lease 500 ${fmt.s(times.lease.at(-1))} s`)
}
await pool.query(`drop table if exists ${table}`)
await pool.end()

writeSection(
  'delivery',
  `
## Delivery: the export log at scale

Run: \`npm run bench -- delivery\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
\`postgresExportLog\` on a table already holding ${fmt.int(EARLIER)} entries (created by \`exportLogMigration()\`),
PostgreSQL 15 on the same machine. One partitioned export of ${fmt.int(PARTITIONS)} partitions is recorded
(${fmt.int(PARTITIONS + 1)} entries in one transaction: the entries, the check for other exports at their keys, the
replaced ones), then recorded again (a retry of the same commit), then the expiry processor's lease
of 500 expired entries with a no-op deletion (each entry: its lease, the keys no other entry names,
its outcome). Medians of ${ROUNDS} rounds, each on a fresh table.

| step | entries | s |
|---|---:|---:|
| record | ${fmt.int(PARTITIONS + 1)} | ${fmt.s(median(times.record))} |
| record again (same commit) | ${fmt.int(PARTITIONS + 1)} | ${fmt.s(median(times.again))} |
| lease and store 500 expired | 500 | ${fmt.s(median(times.lease))} |
`,
)
