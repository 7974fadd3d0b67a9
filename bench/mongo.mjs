// MongoDB suite: documents from the wire-protocol test server -> csv -> gzip(6) -> file.
// The server (test/fixtures/mongo-server.ts, bundled here with esbuild) runs in this process.
import { mkdirSync, rmSync } from 'node:fs'
import { build } from 'esbuild'
import { MongoClient, ObjectId, Decimal128, Long } from 'mongodb'
import { fmt, machine, runChildAsync, writeSection } from './lib.mjs'

const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
await build({
  entryPoints: [new URL('../test/fixtures/mongo-server.ts', import.meta.url).pathname],
  bundle: true,
  platform: 'node',
  format: 'esm',
  packages: 'external',
  outfile: `${dir}mongo-server.mjs`,
  logLevel: 'error',
})
const { startMongoServer } = await import(`${dir}mongo-server.mjs`)
const server = await startMongoServer()
const client = new MongoClient(server.url)
await client.connect()
const users = client.db('bench').collection('users')
const TOTAL = 1_000_000
for (let from = 0; from < TOTAL; from += 50_000) {
  await users.insertMany(
    Array.from({ length: 50_000 }, (_, k) => {
      const n = from + k
      return {
        _id: ObjectId.createFromTime(1_767_225_600 + n),
        n,
        email: `user${n}@example.com`,
        name: `User ${n}`,
        balance: Decimal128.fromString(`${n}.${String(n % 100).padStart(2, '0')}`),
        visits: Long.fromNumber(n * 3),
        createdAt: new Date(Date.UTC(2026, 0, 1) + n * 1000),
        address: { city: n % 2 ? 'Zürich' : 'Paris, FR', zip: String(10000 + (n % 90000)) },
      }
    }),
    { ordered: false },
  )
}
await client.close()

const script = new URL('mongo-export.mjs', import.meta.url).pathname
const lines = []
const FLAGS = { 64: ['--max-old-space-size=64'], semi4: ['--max-semi-space-size=4'] }
for (const [n, heap] of [[100_000], [1_000_000], [1_000_000, 'semi4'], [1_000_000, 64]]) {
  const run = await runChildAsync(script, [server.url, n, `${dir}mongo.csv.gz`], {}, heap ? FLAGS[heap] : [])
  rmSync(`${dir}mongo.csv.gz`)
  console.error(`${n} ${heap ?? ''}: ${fmt.s(run.ms)} s, ${fmt.int(run.rows / (run.ms / 1000))} rows/s, RSS ${run.rssMb.toFixed(0)} MB`)
  lines.push(
    `| ${fmt.int(run.rows)} | ${heap === 64 ? 'old space 64 MB' : heap ? 'semi-space 4 MB' : 'default'} | ${fmt.s(run.ms)} | ${fmt.int(run.rows / (run.ms / 1000))} | ${fmt.mb(run.bytes)} | ${run.rssMb.toFixed(0)} |`,
  )
}
await server.close()

writeSection(
  'mongo',
  `
## MongoDB: documents -> csv -> gzip(6) -> file

Run: \`npm run bench -- mongo\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
No \`mongod\` can be installed on this machine: the documents come from the wire-protocol test
server of \`test/fixtures/mongo-server.ts\` (in the benchmark's parent process, sharing the 2
cores), read by the real \`mongodb\` driver (batchSize 1000) in a child process. Documents:
ObjectId, int, two strings, Decimal128, Long, Date and a nested address (JSON text in CSV).
These figures measure the library and the driver, not a real server's disk and query engine.
Peak RSS is the child's VmHWM. The last rows change V8's heap sizing only: with
\`--max-semi-space-size=4\` the young generation stops growing to its 16 MB semi-spaces (about
35 MB of the default run's RSS, at no cost in speed), and \`--max-old-space-size=64\` caps the old
space: BSON decoding makes much short-lived garbage, and nothing is retained.

| documents | V8 heap | wall s | rows/s | gzipped MB | peak RSS MB |
|---:|---|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
