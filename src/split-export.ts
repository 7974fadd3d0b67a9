// Split output: one export written as several complete files or objects (parts) and a manifest.
// Rows are cut into parts at row boundaries; each part runs through its own format, gzip and
// sink stages, and the manifest, written last, is the export's commit point.
import { once } from 'node:events'
import { Readable, Writable, type Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ExportError, invalidOption, STAGE_CODES, toExportError, type ExportStage } from './errors.js'
import { checkObject, checkPositiveInteger } from './options.js'
import { applyTransforms, type RowTransform } from './stages/map-rows.js'
import { progress } from './stages/progress.js'
import { Sha256Tap } from './stages/sha256.js'
import { baseName } from './sinks/part-names.js'
import type { Discardable, FormatInfo, Location, Manifest, PartInfo, Row, SegmentSink, Sink, SplitSink } from './types.js'

/** Where a split export cuts its parts; a part ends at the first row boundary past either limit. */
export interface SplitOptions {
  /** Rows per part. */
  rows?: number
  /**
   * Bytes per part as stored (compressed when gzip is on). A part ends at the row that reaches
   * this size, estimated from what has been written and compressed so far: it may pass it by one
   * row plus one compression block (256 KiB of input); for Parquet, by the estimate of one row
   * group's size.
   */
  bytes?: number
}

/** Checks a `split` option: an object with `rows` or `bytes` (positive integers). */
export function checkSplitOptions(split: unknown): SplitOptions {
  checkObject('split', split)
  const { rows, bytes } = split as SplitOptions
  if (rows === undefined && bytes === undefined) invalidOption('split', 'an object with `rows` or `bytes`', split)
  if (rows !== undefined) checkPositiveInteger('split.rows', rows)
  if (bytes !== undefined) checkPositiveInteger('split.bytes', bytes)
  return { rows, bytes }
}

type Format = Transform & FormatInfo
/** A compression stage that tells the input bytes it has compressed and handed on (ours does). */
type Compression = Transform & { readonly bytesWritten?: number }

export interface SplitWriterOptions<L extends object> {
  /**
   * Files (a split export: complete parts and a manifest), or segments of one object (a resumable
   * upload: the format continues across parts, and the sink commits them).
   */
  target: { files: SplitSink<L> } | { segments: SegmentSink<L> }
  /** The first part's format; the next parts get `format.nextPart()` (files) or `nextSegment()` (segments). */
  format: Format
  /** A new compression stage per part, or none. */
  compression: (() => Compression) | undefined
  transforms: RowTransform[]
  /** The source's key of a row (keyset sources), for each part's first and last key. */
  keyOf: ((row: Row) => unknown) | undefined
  /** Column names, when the source knows them. */
  columns: () => string[] | undefined
  limits: SplitOptions
}

/** A part being written: its stages, run by their own pipeline, and what it holds so far. */
class OpenPart<L extends object> {
  rows = 0
  /** The last part: it holds the end of the output. */
  last = false
  firstKey: unknown
  lastKey: unknown
  failedStage: ExportStage | undefined
  readonly digest = new Sha256Tap()
  readonly counter = progress() // counts the bytes before compression
  readonly done: Promise<void>

  constructor(
    readonly number: number,
    readonly format: Format,
    readonly compression: Compression | undefined,
    readonly sink: Sink<L> & Discardable,
  ) {
    const stages: Array<[ExportStage, Transform | Writable]> = [
      ['format', format],
      ['progress', this.counter],
    ]
    if (compression) stages.push(['gzip', compression])
    stages.push(['progress', this.digest], ['sink', sink])
    for (const [stage, stream] of stages) stream.once('error', () => (this.failedStage ??= stage))
    this.done = pipeline(stages.map(([, stream]) => stream)).catch((error: unknown) => {
      const stage = this.failedStage ?? 'sink'
      throw toExportError(error, STAGE_CODES[stage], stage)
    })
    this.done.catch(() => {}) // awaited when the part ends or the export stops
  }

  /**
   * The bytes this part will have once ended, estimated: what has reached the sink, plus what is
   * still in the format and the compressor at the compression ratio so far.
   */
  projectedBytes(): number {
    const encoded = this.counter.bytes + (this.format.pendingBytes ?? 0)
    if (!this.compression) return encoded // every encoded byte lands as it is
    const landed = this.digest.bytes
    const compressed = this.compression.bytesWritten ?? 0
    const ratio = compressed > 0 ? landed / compressed : 1
    return landed + (encoded - compressed) * ratio
  }
}

/**
 * The last stage of a split export: takes rows (object mode), applies the transforms, writes
 * them into parts and, on finish, the manifest. A failure or a destroy before the manifest is
 * written removes every part already written; the manifest's sink decides the commit point.
 */
export class SplitWriter<L extends object = Location> extends Writable {
  readonly #options: SplitWriterOptions<L>
  readonly #parts: Array<PartInfo<L>> = []
  readonly #written = new Set<Sink<L> & Discardable>()
  #part: OpenPart<L> | undefined
  readonly #finishing = new Set<OpenPart<L>>() // ended, still flushing into their sinks
  readonly #segments: SegmentSink<L> | undefined
  #committing: Promise<L> | undefined
  #closing: Promise<void> | undefined // the last part's finish, which waits for those before it
  #opened = 0
  #nextFormat: Format | undefined
  #index = 0 // source rows taken, as the transforms count them
  #rows = 0
  #closedBytes = 0
  #closedUncompressed = 0
  #manifestSink: Sink<L> | undefined
  #manifest: Manifest<L> | undefined
  #firstRow: Row | undefined
  #stopped = false // destroyed: the manifest may no longer be started
  /** Called once every part has landed, before the manifest or the commit (the final progress report). */
  beforeCommit: (() => Promise<void>) | undefined

  constructor(options: SplitWriterOptions<L>) {
    super({ objectMode: true, highWaterMark: 64 })
    this.#options = options
    this.#nextFormat = options.format
    if ('segments' in options.target) {
      const segments = (this.#segments = options.target.segments)
      // A resumed upload: the format continues the row count of the attempts before (no header).
      const first = segments.startRow > 0 ? options.format.nextSegment?.(segments.startRow) : options.format
      if (first && 'writesEnd' in first) first.writesEnd = false
      this.#nextFormat = first
    }
  }

  /** Rows written into parts. */
  get rows(): number {
    return this.#rows
  }

  /** Bytes stored so far (compressed when gzip is on), over every part. */
  get bytes(): number {
    return this.#closedBytes + this.#openParts().reduce((sum, part) => sum + part.digest.bytes, 0)
  }

  /** Bytes before compression, over every part. */
  get uncompressedBytes(): number {
    return this.#closedUncompressed + this.#openParts().reduce((sum, part) => sum + part.counter.bytes, 0)
  }

  /** The parts written so far, in order. */
  get parts(): ReadonlyArray<PartInfo<L>> {
    return this.#parts
  }

  /** The manifest, once written: the export has then succeeded. */
  get manifest(): Manifest<L> | undefined {
    return this.location === undefined ? undefined : this.#manifest
  }

  /** Where the manifest landed: set at the commit point. */
  get location(): L | undefined {
    return this.#segments ? this.#segments.location : this.#manifestSink?.location
  }

  // Synchronous for a row that needs no waiting (sync transforms, no backpressure, no cut).
  override _write(source: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let row: unknown
    try {
      row = applyTransforms(this.#options.transforms, source, this.#index++)
    } catch (error) {
      return callback(error as Error)
    }
    if (row instanceof Promise) row.then((value: unknown) => this.#put(source as Row, value as Row | undefined, callback), callback)
    else this.#put(source as Row, row as Row | undefined, callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#finish().then(() => callback(), callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopped = true
    this.#stop(error).then(
      () => callback(error),
      (cleanupError: unknown) => callback(error ?? toExportError(cleanupError, 'ERR_SINK', 'sink')),
    )
  }

  #openParts(): Array<OpenPart<L>> {
    return this.#part ? [...this.#finishing, this.#part] : [...this.#finishing]
  }

  #put(source: Row, row: Row | undefined, callback: (error?: Error | null) => void): void {
    if (row === undefined) return callback()
    // Segments are cut before the row that finds the part full, so that the last part always
    // holds rows and the end of the output (no empty part, which S3 would refuse after a small one).
    const current = this.#part
    if (this.#segments && current && this.#isFull(current)) {
      this.#cut(current).then(() => this.#put(source, row, callback), callback)
      return
    }
    let part: OpenPart<L>
    try {
      part = this.#part ??= this.#open()
    } catch (error) {
      return callback(error as Error)
    }
    const key = this.#options.keyOf?.(source)
    if (part.rows === 0) part.firstKey = key
    part.lastKey = key
    this.#firstRow ??= row
    part.rows++
    this.#rows++
    const full = !part.format.write(row)
    const cutNow = !this.#segments && this.#isFull(part)
    if (!full && !cutNow) return callback()
    const next = async () => {
      if (full) await Promise.race([once(part.format, 'drain'), part.done])
      if (!this.#segments && this.#isFull(part)) await this.#cut(part)
    }
    next().then(() => callback(), callback)
  }

  #isFull(part: OpenPart<L>): boolean {
    const { rows } = this.#options.limits
    if (this.#segments) {
      // A segment is a part of an upload, and S3 refuses parts under 5 MiB but the last: it is cut
      // once its bytes have landed, never on an estimate (which may fall short by a compressed block).
      return part.digest.bytes >= this.#segments.partBytes(part.number)
    }
    const { bytes } = this.#options.limits
    return (rows !== undefined && part.rows >= rows) || (bytes !== undefined && part.projectedBytes() >= bytes)
  }

  #open(): OpenPart<L> {
    const format = this.#nextFormat
    if (!format) throw new ExportError('ERR_INVALID_OPTION', 'options', 'A split export needs a format with nextPart(), such as csv() or parquet()')
    this.#nextFormat = undefined
    const n = ++this.#opened
    const target = this.#options.target
    const sink = 'segments' in target ? target.segments.partSink(n, () => part.last) : target.files.partSink(n)
    const part: OpenPart<L> = new OpenPart(n, format, this.#options.compression?.(), sink)
    // Files: the next part's format is made now, while this one still holds what it learned.
    // Segments: it continues this one, so it is made once this one has all its rows.
    this.#nextFormat = this.#segments ? undefined : format.nextPart?.()
    return part
  }

  // Ends a part at this row boundary. Its last bytes flush into its sink while rows go on into the
  // next part; at most two parts finish at once, and they are listed in order.
  async #cut(part: OpenPart<L>): Promise<void> {
    this.#part = undefined
    if (this.#segments) this.#nextFormat = asSegment(part.format.nextSegment?.(), false)
    this.#finishing.add(part)
    part.format.end()
    const previous = this.#closing
    const closing = (this.#closing = this.#finishPart(part, previous))
    closing.catch((error: Error) => this.destroy(error)) // fails the export as soon as it fails
    await previous
  }

  async #finishPart(part: OpenPart<L>, previous: Promise<void> | undefined): Promise<void> {
    await part.done
    this.#written.add(part.sink)
    await previous
    this.#finishing.delete(part)
    this.#closedBytes += part.digest.bytes
    this.#closedUncompressed += part.counter.bytes
    const location = part.sink.location!
    const name = baseName('key' in location ? String(location.key) : 'path' in location ? String(location.path) : `part-${this.#parts.length + 1}`)
    const info: PartInfo<L> = { name, location, rows: part.rows, bytes: part.digest.bytes, sha256: part.digest.sha256! }
    if (this.#options.keyOf) Object.assign(info, { firstKey: part.firstKey, lastKey: part.lastKey })
    this.#parts.push(info)
    await this.#segments?.partDone(info, part.last)
  }

  async #finish(): Promise<void> {
    // An export of no rows still has one part: a valid empty file (a CSV header, `[]`).
    const last = this.#part ?? (this.#opened === 0 ? this.#open() : undefined)
    if (last) {
      if ('writesEnd' in last.format) last.format.writesEnd = this.#segments?.writesEnd ?? true // the end of a segmented output
      last.last = true
      await this.#cut(last)
    }
    await this.#closing
    await this.beforeCommit?.()
    if (this.#segments) {
      if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped before its upload was completed')
      this.#committing = this.#segments.commit()
      await this.#committing
      return
    }
    const { format } = this.#options
    const manifest: Manifest<L> = {
      version: 1,
      createdAt: new Date().toISOString(),
      format: format.extension ?? 'bin',
      contentType: format.contentType ?? 'application/octet-stream',
      compression: this.#options.compression ? 'gzip' : 'none',
      rows: this.#rows,
      bytes: this.bytes,
      parts: this.#parts,
    }
    const columns = this.#options.columns() ?? (this.#firstRow && Object.keys(this.#firstRow))
    if (columns) manifest.columns = columns
    const text = JSON.stringify(manifest, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value), 2) + '\n'
    this.#manifest = manifest
    // The commit point: once the manifest is started, its sink decides; never after a stop.
    if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped before its manifest was written')
    this.#manifestSink = (this.#options.target as { files: SplitSink<L> }).files.manifestSink()
    await pipeline(Readable.from([Buffer.from(text)]), this.#manifestSink)
  }

  // A failure or an abort: the open part's stages clean up after themselves (temporary file,
  // multipart upload); the parts already written are removed, unless the manifest has landed.
  async #stop(error: Error | null): Promise<void> {
    const unfinished = this.#openParts()
    for (const part of unfinished) {
      part.format.destroy(error ?? new Error('stopped'))
      await part.done.catch(() => {})
      await closed(part.sink)
      if (part.sink.location !== undefined) this.#written.add(part.sink) // it committed after all
    }
    await this.#closing?.catch(() => {})
    this.#nextFormat?.destroy()
    // A completion already sent decides: once S3 has assembled the object, the export has landed.
    if (this.#committing) await this.#committing.catch(() => {})
    if (this.#segments) return // a failed attempt keeps its parts for the next one
    const manifestSink = this.#manifestSink
    if (manifestSink) {
      manifestSink.destroy(error ?? undefined)
      await closed(manifestSink)
      if (manifestSink.location !== undefined) return
    }
    for (const sink of [...this.#written].reverse()) await sink.discard()
  }
}

/** Resolves once a destroyed stream has closed (its clean-up done), whatever error it had. */
const closed = (stream: Writable): Promise<void> => (stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve())))

/** A segment format whose end is not written (yet). */
function asSegment(format: (Format & { writesEnd: boolean }) | undefined, writesEnd: boolean): Format | undefined {
  if (format) format.writesEnd = writesEnd
  return format
}
