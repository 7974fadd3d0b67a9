// OpenTelemetry, through `@opentelemetry/api` (an optional peer): the one module that uses it. Without
// the package, or without an SDK registered, every call here is a no-op. docs/operations.md lists
// the spans, their attributes and the metrics.
import { createRequire } from 'node:module'
import type { Attributes, Context, Span } from '@opentelemetry/api'
import type { StageTelemetry, TelemetryAttributes } from '../core/types.js'
import type { ExportLogger } from './logger.js'

type Api = typeof import('@opentelemetry/api')

const require = createRequire(import.meta.url)
let api: Api | null | undefined

/** `@opentelemetry/api`, or `null` when it is not installed (looked for once). */
function otel(): Api | null {
  if (api === undefined) {
    try {
      api = require('@opentelemetry/api') as Api
    } catch {
      api = null
    }
  }
  return api
}

const NAME = 'stream-export'

interface Instruments {
  exports: ReturnType<ReturnType<Api['metrics']['getMeter']>['createCounter']>
  rows: ReturnType<ReturnType<Api['metrics']['getMeter']>['createCounter']>
  bytes: ReturnType<ReturnType<Api['metrics']['getMeter']>['createCounter']>
  duration: ReturnType<ReturnType<Api['metrics']['getMeter']>['createHistogram']>
  active: ReturnType<ReturnType<Api['metrics']['getMeter']>['createUpDownCounter']>
}

// The instruments of each meter provider (one, unless an application replaces its global one).
const instrumentsOf = new WeakMap<object, Instruments>()

function instruments(otel: Api): Instruments {
  const provider = otel.metrics.getMeterProvider()
  let found = instrumentsOf.get(provider)
  if (!found) {
    const meter = provider.getMeter(NAME)
    found = {
      exports: meter.createCounter('stream_export.exports', { description: 'Exports ended, by outcome and error code', unit: '{export}' }),
      rows: meter.createCounter('stream_export.rows', { description: 'Rows exported (committed exports)', unit: '{row}' }),
      bytes: meter.createCounter('stream_export.bytes', { description: 'Bytes stored (committed exports)', unit: 'By' }),
      duration: meter.createHistogram('stream_export.duration', { description: 'Duration of exports, by outcome', unit: 's' }),
      active: meter.createUpDownCounter('stream_export.active', { description: 'Exports running', unit: '{export}' }),
    }
    instrumentsOf.set(provider, found)
  }
  return found
}

/** A span that ends in error: the exception recorded, status ERROR with its message. */
function failed(o: Api | null, span: Span | undefined, error: unknown): void {
  if (!span || !o) return
  if (error instanceof Error) span.recordException(error)
  span.setStatus({ code: o.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) })
}

/** How an export ended, for its span, its metrics and its log line. */
export interface ExportOutcome {
  rows: number
  bytes: number
  uncompressedBytes: number
  parts?: number
  checksum?: string
  /** The run ended early at a part boundary, to be continued (see ExportResult.paused). */
  paused?: boolean
  /** The error's stable code, when the export failed. */
  code?: string
  error?: unknown
}

/** The telemetry of one export: its span (a child of the active context's), its metrics, its log lines. */
export interface ExportTelemetry extends StageTelemetry {
  /** A child span from now until `done` is called. */
  start(name: string, attributes?: TelemetryAttributes): (attributes?: TelemetryAttributes) => void
  end(outcome: ExportOutcome): void
}

const clean = (attributes: TelemetryAttributes = {}): Attributes => Object.fromEntries(Object.entries(attributes).filter(([, value]) => value !== undefined))

/** An export option of the library's own (a symbol: no caller passes it): no span and no metrics for this run (a dry run's sample). */
export const UNTRACED: unique symbol = Symbol('stream-export.untraced')

/** Starts the telemetry of an export, under the caller's active trace context (none when `traced` is false). */
export function startExportTelemetry(attributes: TelemetryAttributes, logger: ExportLogger | undefined, traced = true): ExportTelemetry {
  const o = traced ? otel() : null
  const started = performance.now()
  const tracer = o?.trace.getTracer(NAME)
  const span: Span | undefined = tracer?.startSpan('stream-export export', { attributes: clean(attributes) })
  const context: Context | undefined = o && span ? o.trace.setSpan(o.context.active(), span) : undefined
  const metrics = o ? instruments(o) : undefined
  const common = { 'stream_export.source': attributes['stream_export.source'], 'stream_export.format': attributes['stream_export.format'] }
  metrics?.active.add(1, clean(common))
  logger?.info({ event: 'start', ...attributes }, 'export started')

  const child = (name: string, childAttributes?: TelemetryAttributes): Span | undefined =>
    tracer?.startSpan(name, { attributes: clean(childAttributes) }, context)
  const fail = (s: Span | undefined, error: unknown) => failed(o, s, error)
  let ended = false
  return {
    async span<T>(name: string, spanAttributes: TelemetryAttributes, work: () => Promise<T>): Promise<T> {
      const s = child(name, spanAttributes)
      try {
        return await work()
      } catch (error) {
        fail(s, error)
        throw error
      } finally {
        s?.end()
      }
    },
    start(name, startAttributes) {
      const s = child(name, startAttributes)
      return (endAttributes) => {
        s?.setAttributes(clean(endAttributes))
        s?.end()
      }
    },
    event(name, eventAttributes) {
      span?.addEvent(name, clean(eventAttributes))
      logger?.debug?.({ event: name, ...eventAttributes }, name)
    },
    end(outcome) {
      if (ended) return
      ended = true
      const seconds = (performance.now() - started) / 1000
      const result = outcome.paused ? 'paused' : outcome.code === undefined ? 'committed' : outcome.code === 'ERR_ABORTED' ? 'aborted' : 'failed'
      const endAttributes = {
        'stream_export.outcome': result,
        'stream_export.rows': outcome.rows,
        'stream_export.bytes': outcome.bytes,
        'stream_export.uncompressed_bytes': outcome.uncompressedBytes,
        'stream_export.parts': outcome.parts,
        'stream_export.checksum': outcome.checksum,
        'error.type': outcome.code,
      }
      span?.setAttributes(clean(endAttributes))
      if (outcome.code !== undefined) fail(span, outcome.error)
      else if (o) span?.setStatus({ code: o.SpanStatusCode.OK })
      span?.end()
      const labels = clean({ ...common, 'stream_export.outcome': result, 'error.type': outcome.code })
      metrics?.active.add(-1, clean(common))
      metrics?.exports.add(1, labels)
      metrics?.duration.record(seconds, labels)
      if (outcome.code === undefined) {
        metrics?.rows.add(outcome.rows, clean(common))
        metrics?.bytes.add(outcome.bytes, clean(common))
        logger?.info({ event: outcome.paused ? 'pause' : 'commit', ...endAttributes, durationMs: Math.round(seconds * 1000) }, `export ${result}`)
      } else {
        const message = outcome.error instanceof Error ? outcome.error.message : String(outcome.error)
        logger?.error({ event: 'failure', ...endAttributes, durationMs: Math.round(seconds * 1000), err: outcome.error }, `export ${result}: ${message}`)
      }
    },
  }
}

/**
 * A span of the library's own around `work`, under the active context, for work outside an export
 * (a sharded flow's parent joining its shards: the flow's commit).
 */
export async function recordSpan<T>(name: string, attributes: TelemetryAttributes, work: () => Promise<T>): Promise<T> {
  const o = otel()
  const span = o?.trace.getTracer(NAME).startSpan(name, { attributes: clean(attributes) })
  try {
    return await work()
  } catch (error) {
    failed(o, span, error)
    throw error
  } finally {
    span?.end()
  }
}
