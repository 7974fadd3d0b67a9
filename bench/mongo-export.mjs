// One MongoDB export in this process: a collection -> csv -> gzip(6) -> file.
//   node bench/mongo-export.mjs <mongodb url> <limit> <out path>
import { readFileSync } from 'node:fs'
import { MongoClient } from 'mongodb'
import { csv, exportStream, fileSink, mongoSource } from 'stream-export'

const [url, limit, path] = process.argv.slice(2)
const client = new MongoClient(url)
await client.connect()
const collection = client.db('bench').collection('users')
const started = performance.now()
const result = await exportStream({
  source: mongoSource({ collection, filter: { n: { $lt: Number(limit) } } }),
  format: csv(),
  gzip: { level: 6 },
  sink: fileSink({ path }),
})
const ms = performance.now() - started
await client.close()
// Peak RSS from /proc (VmHWM): getrusage's maxRSS of a process spawned by a large parent (the
// benchmark holds the test server's documents) can report the parent's pages from before exec.
const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
console.log(JSON.stringify({ ms, rows: result.rows, bytes: result.bytes, rssMb: hwm ? Number(hwm) / 1024 : process.resourceUsage().maxRSS / 1024 }))
