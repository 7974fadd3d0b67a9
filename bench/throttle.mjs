// Throttle suite: how close `maxRowsPerSecond` keeps an export to its rate, and how far the rows
// read from PostgreSQL run ahead of it. 1M rows of a query (id, 100 bytes of text) -> csv ->
// a counting sink, through PostgreSQL's COPY and through the cursor (a transform), at 50,000 rows
// a second, each after an unthrottled run of the same export for the baseline.
import { Writable } from 'node:stream'
import pg from 'pg'
import { csv, exportStream, postgresSource } from '../dist/index.js'
import { fmt, machine, writeSection } from './lib.mjs'

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const ROWS = 1_000_000
const RATE = 50_000
const text = `select g as id, repeat('x', 100) as pad from generate_series(1, ${ROWS}) g`
const pool = new pg.Pool({ connectionString: url, max: 2 })

async function run(path, rate) {
  const source = postgresSource({ pool, text })
  let read = 0
  source.on('data', (chunk) => (read += chunk.encodedRows ?? chunk.rows?.length ?? 1))
  const started = performance.now()
  let ahead = 0
  const sampler = setInterval(() => (ahead = Math.max(ahead, read - (rate * (performance.now() - started)) / 1000)), 100)
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() })
  await exportStream({
    source: path === 'cursor' ? source.map((row) => row) : source,
    format: csv(),
    sink,
    ...(rate === Infinity ? {} : { maxRowsPerSecond: rate }),
  })
  clearInterval(sampler)
  return { ms: performance.now() - started, ahead }
}

const lines = []
for (const path of ['COPY', 'cursor']) {
  const free = await run(path, Infinity)
  const held = await run(path, RATE)
  const expected = (ROWS / RATE) * 1000
  console.error(
    `${path}: unthrottled ${fmt.s(free.ms)} s; at ${RATE}/s ${fmt.s(held.ms)} s (expected ${fmt.s(expected)}), ahead at most ${fmt.int(held.ahead)} rows`,
  )
  lines.push(
    `| ${path} | ${fmt.s(free.ms)} | ${fmt.s(held.ms)} | ${(((held.ms - expected) / expected) * 100).toFixed(1)}% | ${fmt.int(Math.max(0, held.ahead))} |`,
  )
}
await pool.end()

writeSection(
  'throttle',
  `
## Throttle: maxRowsPerSecond

Run: \`npm run bench -- throttle\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
${fmt.int(ROWS)} rows of \`${text.replace(String(ROWS), 'N')}\` -> \`csv()\` -> a sink that drops the bytes, in
this process, PostgreSQL on the same machine; each path once unthrottled (the baseline) and once
at ${fmt.int(RATE)} rows a second (${fmt.s((ROWS / RATE) * 1000)} s expected). "Ahead" is the most rows the source had
read beyond what the rate allowed at that moment (sampled every 100 ms): what the buffers between
PostgreSQL and the throttle hold, not a backlog that grows.

| path | unthrottled s | at ${fmt.int(RATE)} rows/s, s | vs expected | ahead, rows (max) |
|---|---|---|---|---|
${lines.join('\n')}
`,
)
