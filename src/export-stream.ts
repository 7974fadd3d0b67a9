import { availableParallelism } from 'node:os'
import { Readable, Writable, type Transform } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { ExportError, invalidOption, STAGE_CODES, toExportError, type ExportStage } from './errors.js'
import { checkFunction, checkNonNegativeInteger, checkObject, checkTimerMs } from './options.js'
import { fromIterable, type RowIterable } from './sources/iterable.js'
import { adjustableGzip, GZIP_CONTENT_TYPE, growGzip, gzip as gzipStage, normalizeGzipOptions, type GzipOptions } from './stages/gzip.js'
import { checkTransforms, mapRows, type RowTransform } from './stages/map-rows.js'
import { checkSplitOptions, SplitWriter, type SplitOptions, type SplitWriterOptions } from './split-export.js'
import { progress as progressTap, type Progress } from './stages/progress.js'
import type { FormatInfo, Location, Manifest, PartInfo, SegmentSink, SinkInfo, SourceExtras, SplitSink } from './types.js'

export interface ExportOptions<L extends object = Location> {
  /** Rows: an object-mode Readable (any source of this library) or an (async) iterable of row objects. */
  source: (Readable & SourceExtras) | RowIterable
  /**
   * Row function(s) applied between source and format: `(row, index) => row | undefined` (or a
   * promise of it); `undefined` drops the row. An array runs in order. A throw: ERR_TRANSFORM.
   */
  transform?: RowTransform | RowTransform[]
  /** Format stage: `csv()`, `jsonl()`, `jsonArray()`, `parquet()`, or any Transform from rows to bytes (expose `rows` for counts). */
  format?: Transform & FormatInfo
  /**
   * `true` for gzip level 6, `{ level, threads }`, or a ready compression Transform. Default off.
   * Unless `threads` is given, compression uses every core for a source of formatted bytes
   * (COPY), and leaves one core to row encoding otherwise.
   */
  gzip?: boolean | GzipOptions | Transform
  /** Last stage: `fileSink()`, `s3Sink()`, or any Writable (an HTTP response too). */
  sink: Writable & SinkInfo<L>
  /** Progress callback (see `Progress`): every `progressIntervalMs` and once at the end. */
  onProgress?: (progress: Progress) => void | Promise<unknown>
  /** Default 1000. */
  progressIntervalMs?: number
  /** Expected row count for percent/ETA, if the caller knows it (otherwise asked of the source). */
  totalRows?: number
  /** Aborting stops every stage, cleans up and rejects with ERR_ABORTED (`cause`: `signal.reason`). */
  signal?: AbortSignal
  /**
   * Write the export as parts, each a complete file or object (`statements-00001.csv.gz`...), and a
   * manifest beside them (`statements.manifest.json`), written last as the commit point. Needs a
   * sink that names parts (`fileSink`, `s3Sink`) and a format of this library. See docs/parts.md.
   */
  split?: SplitOptions
}

export interface ExportResult<L extends object = Location> {
  rows: number
  /** Bytes the sink received (compressed when gzip is on). */
  bytes: number
  /** Bytes before compression. */
  uncompressedBytes: number
  durationMs: number
  /** Where the export landed (a split export: its manifest); `undefined` for a plain Writable sink. */
  location: L | undefined
  /** A split export's parts, in order. */
  parts?: Array<PartInfo<L>>
  /** A split export's manifest, as written. */
  manifest?: Manifest<L>
  /**
   * Keyset sources (`postgresKeysetSource`, `mongoSource({ keyset: true })`): the key of the last
   * row of this export, known to be in the destination (it is read at the commit point). Pass it as
   * `after` to export only what came next. A failed export leaves nothing behind, so it has none:
   * start again from the same `after`.
   */
  checkpoint?: unknown
  /**
   * Incremental sources (`postgresIncrementalSource`): where the next run starts. Store it once the
   * export has succeeded (`incrementalExport` does) and pass it as the next run's `after`.
   */
  watermark?: unknown
}

function toSource(value: unknown): Readable & SourceExtras {
  if (value instanceof Readable) return value
  return fromIterable(value as RowIterable)
}

/**
 * Runs one export: source -> [transform] -> format -> [gzip] -> progress -> sink, as a single
 * `pipeline()` call.
 * Resolves when the sink has finished (file renamed, upload completed). On any failure or abort,
 * every stage is destroyed and cleans up (cursor closed, temp file removed, upload aborted).
 */
export async function exportStream<L extends object = Location>(options: ExportOptions<L>): Promise<ExportResult<L>> {
  const started = performance.now()
  checkObject('options', options)
  let sink: Writable & SinkInfo<L>
  let format: ExportOptions<L>['format']
  let signal: AbortSignal | undefined
  let onProgress: ExportOptions<L>['onProgress']
  let progressIntervalMs: number
  let totalRows: number | undefined
  let source: Readable & SourceExtras
  let compress: Transform | undefined
  let transform: Transform | undefined
  let splitter: SplitWriter<L> | undefined
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
    // A source that may encode rows itself (Postgres COPY) gets a gzip stage that can take every core once it does.
    mayEncode = Boolean(format?.textEncoding && source.encodeFor && options.transform === undefined && options.split === undefined && !isSegmentSink(sink))
    compress = makeGzip(options.gzip, Boolean(source.preformatted), mayEncode)
    if (compress && format?.compressed) {
      invalidOption('gzip', 'off for a format that compresses its own output (Parquet, XLSX)', options.gzip)
    }
    if (options.split !== undefined || isSegmentSink(sink)) splitter = splitWriter(options, source, format!, compress)
    else if (options.transform !== undefined) transform = mapRows(options.transform)
  } catch (error) {
    destroyAll([options.source, format, options.gzip, sink!, compress])
    throw toExportError(error, 'ERR_INVALID_OPTION', 'options')
  }
  const rowsOf = (): number => (splitter ?? source.preformatted ?? format)?.rows ?? 0
  const meter = progressTap() // counts bytes before compression
  const uploaded = sink.uploadedBytes !== undefined && !splitter ? () => sink.uploadedBytes ?? 0 : undefined
  const input = source.bytesRead !== undefined ? () => ({ bytesRead: source.bytesRead ?? 0, totalBytes: source.totalBytes }) : undefined
  const tap = progressTap({
    onProgress,
    intervalMs: progressIntervalMs,
    totalRows,
    rows: rowsOf,
    // A split export: the parts count, and the tap is outside the stream (see below).
    ...(splitter ? { bytes: () => splitter.bytes, uncompressedBytes: () => splitter.uncompressedBytes } : { uncompressedBytes: () => meter.bytes }),
    uploadedBytes: uploaded,
    input,
  })

  format?.useSourceColumns?.(() => source.columnTypes?.())
  if (mayEncode) source.encodeFor!(format!.textEncoding!, () => growGzip(compress, availableParallelism()))
  // Rows in batches when what reads them takes batches (a transform of ours hands them on as batches).
  if (!splitter && format?.takesBatches) source.sendBatches?.()
  const sinkInfo = source.preformatted ?? format
  // A gzipped export is a .gz file: stored as application/gzip without Content-Encoding, so that a
  // browser following a presigned link saves the gzip bytes its name promises instead of decoding them.
  sink.setContentInfo?.({ contentType: compress ? GZIP_CONTENT_TYPE : sinkInfo?.contentType })

  let failed: { stage: ExportStage; error: unknown } | undefined
  const stages: Array<[ExportStage, Readable | Writable]> = [['source', source]]
  if (splitter) {
    // The parts run their own format, gzip and sink stages; the sink given is their template. The
    // tap reads its figures from the parts: it reports on its timer, and once more when it is
    // ended, after the last part has landed and before the manifest (or the commit).
    const parts = splitter
    stages.push(['sink', parts])
    tap.once('error', (error) => {
      failed ??= { stage: 'progress', error }
      parts.destroy(error)
    })
    parts.once('close', () => tap.destroy())
    tap.start()
    tap.resume() // nothing flows through it; its end is its final report
    parts.beforeCommit = () => finished(tap.end())
  } else {
    if (transform) stages.push(['transform', transform])
    if (format) stages.push(['format', format])
    stages.push(['progress', meter])
    if (compress) stages.push(['gzip', compress])
    stages.push(['progress', tap], ['sink', sink])
  }
  const last: Writable & SinkInfo<L> = splitter ?? sink

  for (const [stage, stream] of stages) stream.once('error', (error) => (failed ??= { stage, error }))
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
        tap.totalRows ??= count
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
    // The sink's commit (rename, CompleteMultipartUpload) is the point of no return: once it has
    // happened every stage had finished, so an abort that arrived during it changes nothing.
    if (last.location === undefined) {
      if (signal?.aborted) throw new ExportError('ERR_ABORTED', 'export', 'The export was aborted', { cause: signal.reason })
      const stage = failed?.stage ?? 'sink'
      throw toExportError(failed?.error ?? error, STAGE_CODES[stage], stage)
    }
  } finally {
    stop?.dispose()
    if (splitter) sink.destroy() // the template: it never received a byte, so it leaves nothing
  }
  return {
    rows: rowsOf(),
    bytes: tap.bytes,
    uncompressedBytes: splitter ? splitter.uncompressedBytes : meter.bytes,
    durationMs: performance.now() - started,
    location: last.location,
    ...(splitter?.manifest ? { parts: [...splitter.parts], manifest: splitter.manifest } : {}),
    ...(source.checkpoint !== undefined ? { checkpoint: source.checkpoint } : {}),
    ...(source.watermark !== undefined ? { watermark: source.watermark } : {}),
  }
}

const isSplitSink = <L extends object>(sink: unknown): sink is SplitSink<L> =>
  typeof (sink as Partial<SplitSink<L>>).partSink === 'function' && typeof (sink as Partial<SplitSink<L>>).manifestSink === 'function'
const isSegmentSink = <L extends object>(sink: unknown): sink is SegmentSink<L> =>
  typeof (sink as Partial<SegmentSink<L>>).partSink === 'function' && typeof (sink as Partial<SegmentSink<L>>).commit === 'function'

/**
 * Checks a `split` option (or a sink that takes segments of one object) and builds the last stage
 * of an export in parts (see docs/parts.md).
 */
function splitWriter<L extends object>(
  options: ExportOptions<L>,
  source: Readable & SourceExtras,
  format: Transform & FormatInfo,
  compress: Transform | undefined,
): SplitWriter<L> {
  const { split, sink } = options
  let target: SplitWriterOptions<L>['target']
  let limits: SplitOptions = {}
  if (source.preformatted) invalidOption('split', 'undefined for a source that emits formatted bytes (COPY): parts are cut between rows', split)
  if (isSegmentSink<L>(sink)) {
    if (split !== undefined) invalidOption('split', 'undefined for a sink that takes one object in segments', split)
    if (typeof format.nextSegment !== 'function') invalidOption('format', 'a text format (csv(), jsonl(), jsonArray()) for an upload in segments', format)
    target = { segments: sink }
  } else {
    const { rows, bytes } = checkSplitOptions(split)
    if (!isSplitSink<L>(sink)) invalidOption('sink', 'a sink that names parts (fileSink() or s3Sink()) for a split export', sink)
    if (typeof format.nextPart !== 'function')
      invalidOption('format', 'a format of this library (csv(), jsonl(), jsonArray(), parquet(), xlsx()) for a split export', format)
    target = { files: sink }
    limits = { rows, bytes }
  }
  const gzipOption = options.gzip
  if (gzipOption instanceof Readable || gzipOption instanceof Writable) {
    invalidOption('gzip', 'true or gzip options for a split export (each part gets its own compression stage)', gzipOption)
  }
  // The first part takes the compression stage already made; each next part a new one alike.
  let ready = compress
  const compression = () => {
    const stage = ready ?? makeGzip(gzipOption, false, false)!
    ready = undefined
    return stage
  }
  return new SplitWriter<L>({
    target,
    format,
    compression: compress ? compression : undefined,
    transforms: options.transform === undefined ? [] : checkTransforms(options.transform),
    keyOf: source.keyOf?.bind(source),
    columns: () => source.columnTypes?.()?.map((column) => column.name),
    limits,
  })
}

function makeGzip(option: ExportOptions['gzip'], bytesOnly: boolean, mayEncode: boolean): Transform | undefined {
  if (option === undefined || option === false) return undefined
  if (option instanceof Readable && option instanceof Writable) return option
  if (option !== true && (typeof option !== 'object' || option === null || Array.isArray(option))) {
    invalidOption('gzip', 'a boolean, gzip options ({ level, threads }) or a compression Transform', option)
  }
  // Encoding rows takes the main thread's core: compressing on every core would take CPU from it
  // (measured on 2 cores: 30% slower), so row exports leave it one; a byte source needs none.
  // A source that encodes rows itself (see encodeFor) leaves the main thread idle: its stage can
  // take every core once it does, unless the caller chose the thread count.
  const chosen = option === true ? {} : option
  const { level, threads } = normalizeGzipOptions({ threads: bytesOnly ? availableParallelism() : Math.max(1, availableParallelism() - 1), ...chosen })
  return mayEncode && chosen.threads === undefined ? adjustableGzip(level, threads) : gzipStage({ level, threads })
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

function destroyAll(values: unknown[]): void {
  for (const value of values) if (value instanceof Readable || value instanceof Writable) value.destroy()
}
