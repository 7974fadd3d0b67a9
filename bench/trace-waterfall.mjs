// Draws one export's trace as docs/operations-trace.svg: the spans stream-export records (with the
// real OpenTelemetry SDK, an in-memory exporter) for 250,000 rows from PostgreSQL -> csv -> gzip ->
// s3Sink (the test suite's S3 server, in this process), inside a span standing for the API request.
// Run: node bench/trace-waterfall.mjs (after npm run build).
import { writeFileSync } from 'node:fs'
import { context, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import pg from 'pg'
import { csv, exportStream, postgresSource, s3Sink } from '../dist/index.js'
import { startTestS3 } from './lib.mjs'

const spans = new InMemorySpanExporter()
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))

const server = await startTestS3('trace')
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', max: 2 })
const text = 'select g as id, md5(g::text) || repeat(md5((g * 7)::text), 6) as memo from generate_series(1, 250000) g'
await trace.getTracer('api').startActiveSpan('POST /exports (the API request)', async (request) => {
  await exportStream({
    source: postgresSource({ pool, text, applicationName: 'stream-export:trace' }),
    format: csv(),
    compression: 'gzip',
    sink: s3Sink({ client: server.client, bucket: server.bucket, key: 'trace/statements.csv.gz', partSize: 5 * 1024 * 1024 }),
  })
  request.end()
})
await pool.end()
await server.close()

const ns = ([s, n]) => s * 1e9 + n
const finished = spans.getFinishedSpans()
const depthOf = (span) => {
  const parent = finished.find((s) => s.spanContext().spanId === span.parentSpanContext?.spanId)
  return parent ? depthOf(parent) + 1 : 0
}
const all = [...finished].sort((a, b) => ns(a.startTime) - ns(b.startTime) || depthOf(a) - depthOf(b))
const t0 = Math.min(...all.map((s) => ns(s.startTime)))
const t1 = Math.max(...all.map((s) => ns(s.endTime)))
const depth = depthOf
const [left, width, row] = [330, 560, 26]
const x = (t) => left + ((t - t0) / (t1 - t0)) * width
const label = (span) => {
  const part = span.attributes['stream_export.part']
  return part === undefined ? span.name : `${span.name} ${part} (${(span.attributes['stream_export.part_bytes'] / 2 ** 20).toFixed(1)} MiB)`
}
const colour = (span) =>
  span.name.includes('upload') ? '#4e79a7' : span.name.includes('commit') ? '#e15759' : span.name.includes('source') ? '#59a14f' : '#9c9c9c'
const bars = all.map((span, i) => {
  const y = 40 + i * row
  const [from, to] = [x(ns(span.startTime)), x(ns(span.endTime))]
  const ms = ((ns(span.endTime) - ns(span.startTime)) / 1e6).toFixed(0)
  return [
    `<text x="${10 + depth(span) * 14}" y="${y + 16}">${label(span)}</text>`,
    `<rect x="${from.toFixed(1)}" y="${y + 4}" width="${Math.max(1, to - from).toFixed(1)}" height="16" fill="${colour(span)}"/>`,
    `<text x="${(to + 4).toFixed(1)}" y="${y + 16}" fill="#555">${ms} ms</text>`,
  ].join('')
})
const height = 50 + all.length * row
const total = ((t1 - t0) / 1e6).toFixed(0)
writeFileSync(
  new URL('../docs/operations-trace.svg', import.meta.url),
  `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 70}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-weight="bold">One export's trace: 250,000 rows, PostgreSQL -> csv -> gzip -> S3 (${total} ms in all)</text>
${bars.join('\n')}
</svg>
`,
)
console.error(all.map((s) => `${'  '.repeat(depth(s))}${label(s)}: ${((ns(s.endTime) - ns(s.startTime)) / 1e6).toFixed(1)} ms`).join('\n'))
