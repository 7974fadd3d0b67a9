import { availableParallelism } from 'node:os'
import { Readable, Writable, type Transform } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { ExportError, invalidOption, STAGE_CODES, toExportError, type ExportStage } from '../core/errors.js'
import { destroyAll } from '../core/streams.js'
import { checkFunction, checkNonNegativeInteger, checkObject, checkTimerMs, optionNames } from '../core/options.js'
import { fromIterable, type RowIterable } from '../sources/iterable.js'
import { growGzip } from '../stages/gzip.js'
import { checkRates, Throttle, type ThrottleRates } from '../stages/throttle.js'
import { checkLogger, type ExportLogger } from '../telemetry/logger.js'
import { startExportTelemetry, UNTRACED, type ExportTelemetry } from '../telemetry/otel.js'
import { compressionOf, type Compression } from './compression.js'
import { mapRows } from '../stages/map-rows.js'
import type { SplitWriter } from '../parts/writer.js'
import type { PartitionWriter } from '../parts/partitions.js'
import { isSegmentSink, splitWriter } from './negotiate.js'
import type { ExportOptions, ExportResult } from './options.js'
import { progress as progressTap } from '../stages/progress.js'
import type { CommitHook, Location, PartInfo, SinkInfo, SourceExtras } from '../core/types.js'

export type { ExportOptions, ExportResult }

/** The option names of exportStream (an incremental export takes them too). */
export const EXPORT_OPTION_NAMES = optionNames<ExportOptions>({
  source: true,
  transform: true,
  format: true,
  gzip: true,
  compression: true,
  sink: true,
  onProgress: true,
  progressIntervalMs: true,
  totalRows: true,
  signal: true,
  split: true,
  partitionBy: true,
  maxRowsPerSecond: true,
  maxBytesPerSecond: true,
  logger: true,
})

function toSource(value: unknown): Readable & SourceExtras {
  if (value instanceof Readable) return value
  return fromIterable(value as RowIterable)
}

/**
 * Runs one export: source -> [transform] -> format -> [gzip or zstd] -> progress -> sink, as a single
 * `pipeline()` call.
 * Resolves when the sink has finished (file renamed, upload completed). On any failure or abort,
 * every stage is destroyed and cleans up (cursor closed, temp file removed, upload aborted).
 */
export async function exportStream<L extends object = Location>(options: ExportOptions<L>): Promise<ExportResult<L>> {
  const started = performance.now()
  checkObject('options', options, EXPORT_OPTION_NAMES)
  let sink: Writable & SinkInfo<L>
  let format: ExportOptions<L>['format']
  let signal: AbortSignal | undefined
  let onProgress: ExportOptions<L>['onProgress']
  let progressIntervalMs: number
  let totalRows: number | undefined
  let source: Readable & SourceExtras
  let compression: Compression | undefined
  let transform: Transform | undefined
  let splitter: SplitWriter<L> | PartitionWriter<L> | undefined
  let rates: ThrottleRates | undefined
  let logger: ExportLogger | undefined
  // Rows a source can encode exactly as the format would (Postgres COPY) skip the row path; a
  // transform needs row objects, and a split cuts parts between rows of its own counting.
  let mayEncode: boolean
  try {
    // Read once, here: an options object with throwing getters fails as an invalid option.
    ;({ sink, format, signal, onProgress, progressIntervalMs = 1000, totalRows } = options)
    try {
      source = toSource(options.source)
    } catch (error) {
      // e.g. an iterable whose iterator throws when it is created
      throw toExportError(error, 'ERR_SOURCE', 'source')
    }
    if (!isWritableStream(sink)) invalidOption('sink', 'a Writable such as fileSink(), s3Sink() or an HTTP response', sink)
    if (source.preformatted) {
      if (format !== undefined) invalidOption('format', 'undefined for a source that emits formatted bytes', format)
      if (options.transform !== undefined) invalidOption('transform', 'undefined for a source that emits formatted bytes', options.transform)
    } else if (!(format instanceof Readable && format instanceof Writable)) {
      invalidOption('format', 'a format stage such as csv(), jsonl() or jsonArray()', format)
    }
    if (onProgress !== undefined) checkFunction('onProgress', onProgress)
    checkTimerMs('progressIntervalMs', progressIntervalMs)
    if (totalRows !== undefined) checkNonNegativeInteger('totalRows', totalRows)
    if (signal !== undefined && !(signal instanceof AbortSignal)) invalidOption('signal', 'an AbortSignal', signal)
    rates = checkRates(options, source)
    logger = checkLogger(options.logger)
    // A source that may encode rows itself (Postgres COPY) gets a gzip stage that can take every core once it does.
    mayEncode = Boolean(
      format?.textEncoding &&
      source.encodeFor &&
      options.transform === undefined &&
      options.split === undefined &&
      options.partitionBy === undefined &&
      !isSegmentSink(sink),
    )
    compression = compressionOf(options, Boolean(source.preformatted), mayEncode)
    if (compression && format?.compressed) {
      const name = options.compression === undefined ? 'gzip' : 'compression'
      invalidOption(name, 'off for a format that compresses its own output (Parquet, XLSX)', options[name])
    }
    if (options.split !== undefined || options.partitionBy !== undefined || isSegmentSink(sink))
      // (The export's telemetry starts once the options are checked; the parts' sinks record under it.)
      splitter = splitWriter(options, source, format!, compression, () => telemetry)
    else if (options.transform !== undefined) transform = mapRows(options.transform)
  } catch (error) {
    destroyAll([options.source, format, options.gzip, sink!, compression?.stage])
    throw toExportError(error, 'ERR_INVALID_OPTION', 'options')
  }
  const rowsOf = (): number => (splitter ?? source.preformatted ?? format)?.rows ?? 0
  const rowsBefore = rowsOf() // (a partitioned export continuing a checkpoint counts its kept rows)
  const meter = progressTap() // counts bytes before compression
  // A destination that says what it has stored and lets us act before its commit (S3): the
  // reports go on while the last parts upload, the final one just before the commit.
  const hooked = splitter ?? (sink.uploadedBytes !== undefined && hasCommitHook(sink) ? sink : undefined)
  const counter = hooked === sink ? progressTap() : undefined // counts the bytes the sink receives
  const uploaded = sink.uploadedBytes !== undefined && !splitter ? () => sink.uploadedBytes ?? 0 : undefined
  const input = source.bytesRead !== undefined ? () => ({ bytesRead: source.bytesRead ?? 0, totalBytes: source.totalBytes }) : undefined
  const tap = progressTap({
    onProgress,
    intervalMs: progressIntervalMs,
    totalRows,
    rows: rowsOf,
    // A split export: the parts count, and the tap is outside the stream (see below).
    ...(splitter
      ? { bytes: () => splitter.bytes, uncompressedBytes: () => splitter.uncompressedBytes }
      : { uncompressedBytes: () => meter.bytes, ...(counter ? { bytes: () => counter.bytes } : {}) }),
    uploadedBytes: uploaded,
    input,
  })

  format?.useSourceColumns?.(() => source.columnTypes?.())
  const compress = compression?.stage
  if (mayEncode) source.encodeFor!(format!.textEncoding!, () => growGzip(compress, availableParallelism()))
  // Rows in batches when what reads them takes batches (a transform of ours hands them on as batches).
  if (splitter ? splitter.takesBatches : format?.takesBatches) source.sendBatches?.()
  const sinkInfo = source.preformatted ?? format
  // A gzipped export is a .gz file: stored as application/gzip without Content-Encoding, so that a
  // browser following a presigned link saves the gzip bytes its name promises instead of decoding
  // them (zstd alike: application/zstd, a .zst file).
  sink.setContentInfo?.({ contentType: compression ? compression.contentType : sinkInfo?.contentType })
  const telemetry: ExportTelemetry = startExportTelemetry(
    {
      'stream_export.source': source.constructor.name,
      'stream_export.format': sinkInfo?.extension,
      'stream_export.compression': compression?.name,
      'stream_export.sink': sink.constructor.name,
      'stream_export.split': splitter !== undefined,
    },
    logger,
    !(options as { [UNTRACED]?: boolean })[UNTRACED],
  )
  sink.setTelemetry?.(telemetry)
  const sourceDone = telemetry.start('stream-export source')
  finished(source).then(
    () => sourceDone({ 'stream_export.rows': rowsOf() }),
    () => sourceDone({ 'stream_export.rows': rowsOf(), 'stream_export.outcome': 'failed' }),
  )
  let commitDone: ReturnType<ExportTelemetry['start']> | undefined

  let failed: { stage: ExportStage; error: unknown } | undefined
  const stages: Array<[ExportStage, Readable | Writable]> = [['source', source]]
  // The rates: held right after the source, so that it reads no faster (the bytes are the format's output).
  const written = () => (splitter ? splitter.uncompressedBytes : meter.bytes)
  if (rates) stages.push(['source', new Throttle(rates, written, () => rowsOf() - rowsBefore)])
  if (splitter) {
    // The parts run their own format, gzip and sink stages; the sink given is their template.
    stages.push(['sink', splitter])
  } else {
    if (transform) stages.push(['transform', transform])
    if (format) stages.push(['format', format])
    stages.push(['progress', meter])
    if (compression) stages.push([compression.name, compression.stage])
    stages.push(['progress', counter ?? tap], ['sink', sink])
  }
  const last: Writable & SinkInfo<L> = splitter ?? sink
  if (hooked) {
    // The tap is outside the stream, reading its figures from the parts or the sink: it reports on
    // its timer, and once more when it is ended, once everything is stored, before the commit.
    tap.once('error', (error) => {
      failed ??= { stage: 'progress', error }
      last.destroy(error)
    })
    last.once('close', () => tap.destroy())
    tap.start()
    tap.resume() // nothing flows through it; its end is its final report
    hooked.beforeCommit = () =>
      finished(tap.end()).then(() => {
        // A split export's commit is its manifest (a sink times its own commit).
        if (splitter) commitDone = telemetry.start('stream-export commit', { 'stream_export.parts': splitter.parts.length })
      })
  }

  // A stage that failed before the export started (a source whose error the caller saw go by) is
  // the failing one, not the next stage that pipeline() then destroys.
  for (const [stage, stream] of stages) {
    const errored = (stream as { errored?: Error | null }).errored
    if (errored) failed ??= { stage, error: errored }
    stream.once('error', (error) => (failed ??= { stage, error }))
  }
  // A destination that closes before it finished (an HTTP client that went away) is the sink's
  // failure, not the premature close the other stages are then destroyed with.
  last.once('close', () => {
    if (!last.writableFinished)
      failed ??= {
        stage: 'sink',
        error: new ExportError('ERR_SINK', 'sink', 'The destination closed before the export finished (e.g. the HTTP client disconnected)'),
      }
  })
  if (last instanceof Writable) catchSyncThrows(last)
  const stop = signal ? linkedSignal(signal) : undefined

  if (totalRows === undefined && source.countRows) {
    tap.countPending = true
    source.countRows().then(
      (count) => {
        // (Rows counted before the source gave any are not in its count: a continued checkpoint's.)
        tap.totalRows ??= count === undefined ? undefined : count + rowsBefore
        tap.countPending = false
      },
      () => (tap.countPending = false), // a failed count only costs the percentage; the export itself reports real errors
    )
  }

  try {
    await pipeline(
      stages.map(([, stream]) => stream),
      stop ? { signal: stop.signal } : {},
    )
  } catch (error) {
    // pipeline() settles as soon as a stage fails; cleanup (temp file removal, multipart abort,
    // cursor close) is asynchronous, and the caller must not see the rejection before it is done.
    await Promise.all(stages.map(([, stream]) => closed(stream)))
    if (splitter && 'paused' in splitter && splitter.paused) {
      const outcome = { rows: rowsOf(), bytes: splitter.bytes, uncompressedBytes: splitter.uncompressedBytes }
      telemetry.end({ ...outcome, parts: splitter.parts.length, paused: true })
      return { ...outcome, durationMs: performance.now() - started, location: undefined, paused: true }
    }
    // The sink's commit (rename, CompleteMultipartUpload) is the point of no return: once it has
    // happened every stage had finished, so an abort that arrived during it changes nothing.
    if (last.location === undefined) {
      const stage = failed?.stage ?? 'sink'
      const failure = signal?.aborted
        ? new ExportError('ERR_ABORTED', 'export', 'The export was aborted', { cause: signal.reason })
        : toExportError(failed?.error ?? error, STAGE_CODES[stage], stage)
      // What the parts or the sink could not remove (a part, an upload that could not be aborted).
      if (last.leftBehind?.length) failure.leftBehind = [...last.leftBehind]
      if (failure.leftBehind) logger?.warn?.({ event: 'cleanup', leftBehind: failure.leftBehind }, 'a failed export could not remove everything')
      commitDone?.({ 'stream_export.outcome': 'failed' })
      const uncompressedBytes = splitter ? splitter.uncompressedBytes : meter.bytes
      telemetry.end({ rows: rowsOf(), bytes: tap.bytes, uncompressedBytes, code: failure.code, error: failure })
      throw failure
    }
  } finally {
    stop?.dispose()
    if (splitter) sink.destroy() // the template: it never received a byte, so it leaves nothing
  }
  commitDone?.()
  const checksum = last.checksum
  telemetry.end({
    rows: rowsOf(),
    bytes: tap.bytes,
    uncompressedBytes: splitter ? splitter.uncompressedBytes : meter.bytes,
    parts: splitter?.parts.length,
    checksum: checksum && `${checksum.algorithm}:${checksum.value}`,
  })
  return {
    rows: rowsOf(),
    bytes: tap.bytes,
    uncompressedBytes: splitter ? splitter.uncompressedBytes : meter.bytes,
    durationMs: performance.now() - started,
    location: last.location,
    ...(last.checksum ? { checksum: last.checksum } : {}),
    ...(splitter?.manifest ? { parts: [...splitter.parts], manifest: splitter.manifest } : {}),
    ...(splitter?.manifest?.partitionBy ? { partitions: partitionsOf(splitter.parts) } : {}),
    ...(splitter?.leftBehind.length ? { leftBehind: [...splitter.leftBehind] } : {}),
    ...(source.checkpoint !== undefined ? { checkpoint: source.checkpoint } : {}),
    ...(source.watermark !== undefined ? { watermark: source.watermark } : {}),
  }
}

/** The parts of a partitioned export grouped by partition, in order. */
function partitionsOf<L extends object>(parts: ReadonlyArray<PartInfo<L>>): NonNullable<ExportResult<L>['partitions']> {
  const partitions = new Map<string, NonNullable<ExportResult<L>['partitions']>[number]>()
  for (const part of parts) {
    const key = JSON.stringify(part.partition, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value))
    const partition = partitions.get(key) ?? { values: part.partition ?? {}, rows: 0, bytes: 0, parts: [] }
    partitions.set(key, partition)
    partition.rows += part.rows
    partition.bytes += part.bytes
    partition.parts.push(part)
  }
  return [...partitions.values()]
}

function hasCommitHook(sink: object): sink is CommitHook {
  return 'beforeCommit' in sink
}

// An http.ServerResponse is a writable stream without being a stream.Writable (it predates it).
function isWritableStream(value: unknown): value is Writable {
  const stream = value as Partial<Writable> | null
  return typeof stream?.write === 'function' && typeof stream.end === 'function' && typeof stream.on === 'function'
}

function closed(stream: Readable | Writable): Promise<void> {
  if (stream.closed || !stream.destroyed) return Promise.resolve()
  return new Promise((resolve) => stream.once('close', () => resolve()))
}

/**
 * A Writable whose own write or final throws synchronously would throw into another stage's
 * callback and crash the process: the throw becomes the sink's error instead.
 */
function catchSyncThrows(sink: Writable): void {
  type Method = (this: Writable, ...args: unknown[]) => void
  const target = sink as unknown as Record<'_write' | '_writev' | '_final', Method | null | undefined>
  for (const name of ['_write', '_writev', '_final'] as const) {
    const method = target[name]
    if (typeof method !== 'function') continue
    target[name] = function (this: Writable, ...args: unknown[]) {
      try {
        method.apply(this, args)
      } catch (error) {
        ;(args[args.length - 1] as (error: unknown) => void)(error)
      }
    }
  }
}

// One listener on a caller's signal however many exports share it (fifty exports on one signal
// would otherwise warn MaxListenersExceededWarning): it aborts each export's own controller.
const followers = new WeakMap<AbortSignal, Set<AbortController>>()

function linkedSignal(signal: AbortSignal): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController()
  if (signal.aborted) {
    controller.abort(signal.reason)
    return { signal: controller.signal, dispose: () => {} }
  }
  let set = followers.get(signal)
  if (!set) {
    const members = (set = new Set())
    followers.set(signal, members)
    signal.addEventListener(
      'abort',
      () => {
        followers.delete(signal)
        for (const follower of members) follower.abort(signal.reason)
      },
      { once: true },
    )
  }
  set.add(controller)
  const members = set
  return { signal: controller.signal, dispose: () => void members.delete(controller) }
}
