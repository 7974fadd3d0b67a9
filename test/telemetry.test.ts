// OpenTelemetry and the logger, with the real OpenTelemetry SDK and its in-memory exporters: the
// export's span under the caller's, its children (source, each part's upload, the commit), its
// metrics, also for a failed export; the trace carried from an API request through a BullMQ job.
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { context, metrics, propagation, SpanStatusCode, trace, type Span } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { Queue, Worker } from 'bullmq'
import { BullMQOtel } from 'bullmq-otel'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createExportProcessor, createShardedExportProcessor } from '../src/bullmq.js'
import { csv, estimateExport, exportStream, fileSink, fromIterable, jsonl, postgresKeysetSource, s3Sink, type ExportError } from '../src/index.js'
import { createStatements, databaseUrl } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

const spans = new InMemorySpanExporter()
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 })
// As NodeSDK sets them up: a context manager, and the W3C propagator that carries a trace across a queue.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
propagation.setGlobalPropagator(new W3CTraceContextPropagator())
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
const tracer = trace.getTracer('test')

const MiB = 1024 * 1024
let s3: TestS3
beforeAll(async () => {
  s3 = await startS3()
})
afterAll(() => s3.close())
afterEach(() => {
  spans.reset()
  s3.clearFaults()
})

const big = () => fromIterable(Array.from({ length: 15_000 }, (_, id) => ({ id, noise: randomBytes(600).toString('base64') })))
/** Runs `work` inside a span of the caller's (an API request's), and returns that span. */
async function underRequest(work: () => Promise<unknown>): Promise<ReadableSpan & Span> {
  return tracer.startActiveSpan('POST /exports', async (span) => {
    try {
      await work().catch(() => {})
      return span as ReadableSpan & Span
    } finally {
      span.end()
    }
  })
}
const named = (name: string) => spans.getFinishedSpans().filter((span) => span.name === name)
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId

async function metricPoints(name: string) {
  const { resourceMetrics } = await reader.collect()
  const metric = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === name)
  return (metric?.dataPoints ?? []) as Array<{ attributes: Record<string, unknown>; value: unknown }>
}

describe('OpenTelemetry', () => {
  it('an S3 export: its span under the caller’s, the source, each part’s upload and the commit under it, with the figures', async () => {
    let result: Awaited<ReturnType<typeof exportStream>> | undefined
    const request = await underRequest(async () => {
      result = await exportStream({
        source: big(),
        format: csv(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'otel/big.csv', partSize: 5 * MiB }),
      })
    })
    const [exported] = named('stream-export export')
    expect(exported).toBeDefined()
    expect(exported!.spanContext().traceId).toBe(request.spanContext().traceId)
    expect(parentOf(exported!)).toBe(request.spanContext().spanId)
    expect(exported!.attributes).toMatchObject({
      'stream_export.outcome': 'committed',
      'stream_export.rows': 15_000,
      'stream_export.bytes': result!.bytes,
      'stream_export.format': 'csv',
      'stream_export.checksum': `CRC64NVME:${result!.checksum!.value}`,
    })
    const id = exported!.spanContext().spanId
    const uploads = named('stream-export upload part')
    expect(uploads.map((span) => span.attributes['stream_export.part']).sort()).toEqual([1, 2, 3])
    expect(uploads.every((span) => parentOf(span) === id)).toBe(true)
    expect(named('stream-export source').map(parentOf)).toEqual([id])
    const [commit] = named('stream-export commit')
    expect(parentOf(commit!)).toBe(id)
    expect(commit!.attributes['stream_export.parts']).toBe(3)
    // The commit starts after the last part has landed (to the millisecond: the SDK aligns each
    // span's clock with Date.now(), so two spans' times can disagree by less than one; seen on Node 26).
    const ended = (span: ReadableSpan) => span.endTime[0] * 1e3 + span.endTime[1] / 1e6
    const begun = (span: ReadableSpan) => span.startTime[0] * 1e3 + span.startTime[1] / 1e6
    expect(begun(commit!)).toBeGreaterThanOrEqual(Math.max(...uploads.map(ended)) - 1)

    const exports = await metricPoints('stream_export.exports')
    expect(exports.find((p) => p.attributes['stream_export.outcome'] === 'committed')?.value).toBeGreaterThanOrEqual(1)
    expect((await metricPoints('stream_export.rows')).reduce((sum, p) => sum + (p.value as number), 0)).toBeGreaterThanOrEqual(15_000)
  }, 60_000)

  it('a failed export: its span ends in error with the code, a failed part’s upload too; counted by code', async () => {
    s3.inject({ op: 'UploadPart', key: 'otel/failing.csv', partNumber: 2, action: 400 })
    let failure: ExportError | undefined
    await underRequest(async () => {
      failure = await exportStream({
        source: big(),
        format: csv(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'otel/failing.csv', partSize: 5 * MiB }),
      }).then(
        () => undefined,
        (error: ExportError) => error,
      )
    })
    expect(failure?.code).toBe('ERR_SINK')
    const [exported] = named('stream-export export')
    expect(exported!.status.code).toBe(SpanStatusCode.ERROR)
    expect(exported!.attributes).toMatchObject({ 'stream_export.outcome': 'failed', 'error.type': 'ERR_SINK' })
    expect(exported!.events.some((event) => event.name === 'exception')).toBe(true)
    expect(named('stream-export upload part').some((span) => span.status.code === SpanStatusCode.ERROR && span.attributes['stream_export.part'] === 2)).toBe(
      true,
    )
    expect(named('stream-export commit')).toEqual([])
    const failed = (await metricPoints('stream_export.exports')).find((p) => p.attributes['error.type'] === 'ERR_SINK')
    expect(failed?.attributes['stream_export.outcome']).toBe('failed')
  }, 60_000)

  it('a split export to files: the parts written in place, one commit (the manifest) with their number', async () => {
    const dir = await tempDir()
    await exportStream({ source: big(), format: jsonl(), split: { rows: 6000 }, sink: fileSink({ path: `${dir}/out.jsonl` }) })
    const [exported] = named('stream-export export')
    expect(exported!.attributes['stream_export.parts']).toBe(3)
    const commits = named('stream-export commit')
    expect(commits.map((span) => span.attributes['stream_export.parts'])).toEqual([3])
    expect(parentOf(commits[0]!)).toBe(exported!.spanContext().spanId)
    expect((await readdir(dir)).length).toBe(4)
  })

  it('a split export to S3: each part an object with its uploads and its own commit, then the manifest', async () => {
    await exportStream({
      source: big(),
      format: csv(),
      split: { rows: 6000 },
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'otel/split.csv', partSize: 5 * MiB }),
    })
    const id = named('stream-export export')[0]!.spanContext().spanId
    const commits = named('stream-export commit')
    expect(commits.filter((span) => String(span.attributes['stream_export.key']).startsWith('otel/split-'))).toHaveLength(3)
    expect(commits.filter((span) => span.attributes['stream_export.parts'] === 3 && span.attributes['stream_export.key'] === undefined)).toHaveLength(1)
    expect([...commits, ...named('stream-export upload part')].every((span) => parentOf(span) === id)).toBe(true)
  }, 60_000)
  it('a dry run (estimateExport) records no export: no span, no metrics', async () => {
    const before = (await metricPoints('stream_export.exports')).reduce((sum, p) => sum + (p.value as number), 0)
    await estimateExport({ source: fromIterable(Array.from({ length: 500 }, (_, id) => ({ id }))), format: csv(), sampleRows: 100 })
    expect(named('stream-export export')).toEqual([])
    expect((await metricPoints('stream_export.exports')).reduce((sum, p) => sum + (p.value as number), 0)).toBe(before)
  })
})

describe('logger', () => {
  it('structured lines: start, each part, the commit; a failure with its error and code', async () => {
    const lines: Array<[string, Record<string, unknown>, string | undefined]> = []
    const logger = Object.fromEntries(
      (['info', 'error', 'warn', 'debug'] as const).map((level) => [
        level,
        (fields: object, message?: string) => lines.push([level, fields as Record<string, unknown>, message]),
      ]),
    ) as unknown as { info(): void; error(): void }
    await exportStream({
      source: big(),
      format: csv(),
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'otel/logged.csv', partSize: 5 * MiB }),
      logger,
    })
    expect(lines.map(([level, fields]) => `${level} ${String(fields.event)}`)).toEqual(['info start', 'debug part', 'debug part', 'debug part', 'info commit'])
    expect(lines.at(-1)![1]).toMatchObject({ 'stream_export.rows': 15_000, 'stream_export.outcome': 'committed' })

    lines.length = 0
    const failing = fromIterable(
      (function* () {
        yield { id: 1 }
        throw new Error('the source broke')
      })(),
    )
    await exportStream({ source: failing, format: csv(), sink: fileSink({ path: `${await tempDir()}/x.csv` }), logger }).catch(() => {})
    const last = lines.at(-1)!
    expect(last[0]).toBe('error')
    expect(last[1]).toMatchObject({ event: 'failure', 'error.type': 'ERR_SOURCE', err: expect.objectContaining({ code: 'ERR_SOURCE' }) })
    expect(last[2]).toContain('the source broke')
  }, 60_000)

  it('refuses a logger without info() and error() (ERR_INVALID_OPTION)', async () => {
    const error = await exportStream({
      source: fromIterable([{ a: 1 }]),
      format: csv(),
      sink: fileSink({ path: `${await tempDir()}/x.csv` }),
      logger: console.log as never,
    }).catch((e: ExportError) => e)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('logger') })
  })
})

const redisUp = process.env.REDIS_AVAILABLE === '1'
describe.skipIf(!redisUp)(`the trace through a BullMQ job${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('an API request adds the job; the worker’s export is in the same trace (BullMQ’s own telemetry carries it)', async () => {
    const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
    const connection = () => new Redis(redisUrl, { maxRetriesPerRequest: null })
    const name = `se-otel-${Date.now()}`
    const events: string[] = []
    const logger = { info: (fields: { event: string }) => events.push(fields.event), error: (fields: { event: string }) => events.push(fields.event) }
    const telemetry = new BullMQOtel({ tracerName: 'stream-export-test' })
    const queue = new Queue(name, { connection: connection(), telemetry })
    const processor = createExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      // The job's export takes the spec's logger and rate.
      resolve: () => ({ source: fromIterable(Array.from({ length: 1000 }, (_, id) => ({ id }))), format: csv(), logger, maxRowsPerSecond: 2000 }),
    })
    const worker = new Worker(name, processor as never, { connection: connection(), telemetry })
    try {
      const done = new Promise((resolve, reject) => {
        worker.once('completed', resolve)
        worker.once('failed', (_job, error) => reject(error))
      })
      const request = await underRequest(() => queue.add('export', {}))
      const started = Date.now()
      await done
      expect(events).toEqual(['start', 'commit'])
      expect(Date.now() - started).toBeGreaterThan(400) // 1000 rows at 2000 a second
      const [exported] = named('stream-export export')
      expect(exported?.spanContext().traceId).toBe(request.spanContext().traceId)
      expect(exported?.attributes['stream_export.outcome']).toBe('committed')
    } finally {
      await worker.close()
      await queue.close()
    }
  }, 60_000)

  it('a sharded flow: every shard’s export is in the API request’s trace, a failed one too (with its code)', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
    await createStatements(pool, 'se_otel_shards', 20_000)
    const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
    const connection = () => new Redis(redisUrl, { maxRetriesPerRequest: null })
    const name = `se-otel-shards-${Date.now()}`
    const telemetry = new BullMQOtel({ tracerName: 'stream-export-test' })
    const queue = new Queue(name, { connection: connection(), telemetry })
    const processor = createShardedExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      queue,
      partSize: 5 * MiB,
      plan: () => [
        { index: 0, until: 10_000 },
        { index: 1, after: 10_000 },
      ],
      resolve: (_job, { range, after }) => ({
        source: postgresKeysetSource({ pool, table: 'se_otel_shards', key: 'id', after, until: range.until }),
        format: csv(),
      }),
    })
    const worker = new Worker(name, processor as never, { connection: connection(), telemetry, concurrency: 3 })
    const run = async (jobId: string) => {
      const finished = new Promise<unknown>((resolve) => {
        const done = (job: { id?: string } | undefined, outcome: unknown) => {
          if (job?.id !== jobId) return
          worker.off('completed', done)
          worker.off('failed', done)
          resolve(outcome)
        }
        worker.on('completed', done)
        worker.on('failed', done)
      })
      const request = await underRequest(() => queue.add('statements', {}, { jobId, attempts: 1 }))
      const outcome = await finished
      return { request, outcome }
    }
    try {
      const { request } = await run(`${name}-ok`)
      const shards = named('stream-export export')
      expect(shards).toHaveLength(2)
      expect(shards.every((span) => span.spanContext().traceId === request.spanContext().traceId)).toBe(true)
      expect(shards.map((span) => span.attributes['stream_export.rows']).sort()).toEqual([10_000, 10_000])
      // The parent's join of the shards (the flow's commit), in the same trace.
      const joins = named('stream-export commit').filter((span) => span.attributes['stream_export.shards'] === 2)
      expect(joins.map((span) => span.spanContext().traceId)).toEqual([request.spanContext().traceId])

      spans.reset()
      // The second shard's output (small: one object in the flow's stash) is refused.
      s3.inject({ op: 'PutObject', match: (key) => key.includes('-failing.csv.shards/') && key.includes('/1-'), action: 400 })
      const failed = await run(`${name}-failing`)
      const failedShards = named('stream-export export').filter((span) => span.attributes['stream_export.outcome'] === 'failed')
      expect(failedShards.length).toBeGreaterThanOrEqual(1)
      expect(failedShards.every((span) => span.spanContext().traceId === failed.request.spanContext().traceId)).toBe(true)
      expect(failedShards[0]!.attributes['error.type']).toBe('ERR_SINK')
      expect(failed.outcome).toMatchObject({ code: 'ERR_SINK', message: expect.stringContaining('Shard 2 of 2') })
    } finally {
      await worker.close()
      await queue.close()
      await pool.end()
    }
  }, 120_000)
})
