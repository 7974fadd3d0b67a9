// One export for the in-process shards suite, in its own process (its peak RSS is its own):
// node shards-local-export.mjs <serial|N shards> <copy|rows> <table> <out> [batchSize]
// `rows`: csv({ nullValue: 'NULL' }), which COPY cannot write: every row is decoded and encoded in
// JavaScript (by the cursor's reader, or by each shard's thread).
import { rm } from 'node:fs/promises'
import { csv, exportStream, fileSink, postgresShardedSource, postgresSource } from '../dist/index.js'
import { peakRssMb } from './lib.mjs'

const [mode, path, table, out, batchSize = '1000'] = process.argv.slice(2)
const connectionString = process.env.DATABASE_URL
const source =
  mode === 'serial'
    ? postgresSource({ connectionString, text: `select * from ${table} order by id`, batchSize: Number(batchSize) })
    : postgresShardedSource({ connectionString, table, shards: Number(mode), batchSize: Number(batchSize) })
const cpu = process.cpuUsage()
const started = performance.now()
const result = await exportStream({ source, format: csv(path === 'rows' ? { nullValue: 'NULL' } : {}), gzip: true, sink: fileSink({ path: out }) })
const ms = performance.now() - started
const { user, system } = process.cpuUsage(cpu)
await rm(out)
console.log(
  JSON.stringify({ ms, rows: result.rows, bytes: result.bytes, cpu: (user + system) / 1e6, rssMb: peakRssMb(), spilledBytes: source.spilledBytes ?? 0 }),
)
