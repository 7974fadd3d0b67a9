// The part writer: one export written as parts cut at row boundaries, each through its own
// format, gzip and sink stages. Split output: complete files or objects and a manifest, written
// last, the commit point (see commit.ts). Segments: the parts of one object (a resumable upload).
import { once } from 'node:events'
import { Writable } from 'node:stream'
import type { ObjectChecksum } from '../core/checksum.js'
import { ExportError, toExportError } from '../core/errors.js'
import { applyTransforms } from '../stages/map-rows.js'
import {
  isRowBatch,
  rowBatch,
  WAITING_CHUNKS,
  type Discardable,
  type Location,
  type Manifest,
  type PartInfo,
  type PartStore,
  type Row,
  type SegmentSink,
  type Sink,
} from '../core/types.js'
import { locationName } from '../core/location.js'
import { removeAll } from '../core/remove-all.js'
import { whenClosed } from '../core/streams.js'
import { claimManifest, commitError, commitManifest } from './commit.js'
import { buildManifest, manifestBytes, partsKind } from './manifest.js'
import { baseName, newRunId, partPath } from './names.js'
import { heldPartOf, type HeldPart } from './held-part.js'
import { OpenPart, type Format } from './part.js'
import type { SplitWriterOptions } from './split-options.js'

export type { SplitWriterOptions }

/**
 * The last stage of an export in parts: takes rows (object mode), applies the transforms, writes
 * them into parts and, on finish, commits them (split output: the manifest, by the commit rule of
 * commit.ts; segments: the sink's commit). A failure or a destroy before the commit removes every
 * part this run wrote, and nothing any other run wrote.
 */
export class SplitWriter<L extends object = Location> extends Writable {
  readonly #options: SplitWriterOptions<L>
  readonly #parts: Array<PartInfo<L>> = []
  /** Every part sink this run opened, by the name it writes: what a failed run removes. */
  readonly #opened = new Map<string, Sink<L> & Discardable>()
  readonly #run: string
  #part: OpenPart<L> | undefined
  readonly #finishing = new Set<OpenPart<L>>() // ended, still flushing into their sinks
  readonly #segments: SegmentSink<L> | undefined
  /** A partition's one part, held as bytes until it is large enough for its stages (held-part.ts). */
  #held: HeldPart | undefined
  #committing: Promise<unknown> | undefined
  #location: L | undefined
  #leftBehind: string[] = []
  #closing: Promise<void> | undefined // the last part's finish, which waits for those before it
  #count = 0
  #nextFormat: Format | undefined
  #index = 0 // source rows taken, as the transforms count them
  #rows = 0
  #closedBytes = 0
  #closedUncompressed = 0
  #manifest: Manifest<L> | undefined
  #firstRow: Row | undefined
  #stopped = false // destroyed: the manifest may no longer be started
  #paused = false // segments: ended early at a part boundary (see SegmentSink.pausing)
  #partsDone = false // commits: false, and every part has landed: the partition writer decides
  /** Called once every part has landed, before the manifest or the commit (the final progress report). */
  beforeCommit: (() => Promise<void>) | undefined

  /**
   * Whether this writer takes `RowBatch`es (see `SourceExtras.sendBatches`): parts cut by rows
   * alone, rows untransformed, a format that takes batches. A batch then goes into the part as
   * slices of it, cut at the part's row limit: one stream write per slice instead of per row.
   */
  readonly takesBatches: boolean

  constructor(options: SplitWriterOptions<L>) {
    const batches = takesBatches(options)
    super({ objectMode: true, highWaterMark: batches ? WAITING_CHUNKS : 64 })
    this.takesBatches = batches
    this.#options = options
    this.#run = options.run ?? newRunId()
    this.#nextFormat = options.format
    this.#held = heldPartOf(options)
    if ('segments' in options.target) {
      const segments = (this.#segments = options.target.segments)
      // A resumed upload: the format continues the row count of the attempts before (no header).
      const first = segments.startRow > 0 ? options.format.nextSegment?.(segments.startRow) : options.format
      if (first && 'writesEnd' in first) first.writesEnd = false
      this.#nextFormat = first
    }
  }

  /** Segments: the run ended early, every part written has landed, and the sink has its checkpoint. */
  get paused(): boolean {
    return this.#paused
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

  /** Segments: the object's full checksum, once committed (a split export's parts have theirs). */
  get checksum(): ObjectChecksum | undefined {
    return this.#segments?.checksum
  }

  /** Where the manifest landed: set at the commit point. */
  get location(): L | undefined {
    return this.#segments ? this.#segments.location : this.#location
  }

  /**
   * What this run could not remove: after a failure, its own parts; after the commit, parts of
   * the previous export that the new manifest no longer lists.
   */
  get leftBehind(): string[] {
    return this.#leftBehind
  }

  // Split output: before any part, the manifest's name must be this export's to commit.
  override _construct(callback: (error?: Error | null) => void): void {
    if (this.#segments || this.#options.commits === false) return callback()
    const store = (this.#options.target as { files: PartStore<L> }).files
    const { format, compression } = this.#options
    claimManifest(store, partsKind(format, compression)).then(
      () => callback(),
      (error: unknown) => callback(toExportError(error, 'ERR_SINK', 'sink')),
    )
  }

  // Synchronous for a row that needs no waiting (sync transforms, no backpressure, no cut).
  override _write(source: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (isRowBatch(source)) return void this.#putBatch(source.rows).then(() => callback(), callback)
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
    if (this.#held) return void this.#putBatch([row]).then(() => callback(), callback)
    // Segments are cut before the row that finds the part full, so that the last part always
    // holds rows and the end of the output (no empty part, which S3 would refuse after a small one).
    const current = this.#part
    if (this.#segments && current && this.#isFull(current)) {
      if (this.#segments.pausing) return void this.#pause(current).then(() => callback(pausedError()), callback)
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

  // Rows of a batch into parts of `limits.rows` each, a slice per part (see takesBatches).
  async #putBatch(rows: readonly Row[]): Promise<void> {
    if (this.#held) return this.#hold(rows) // (no transforms: no row index to keep)
    const limit = this.#options.limits.rows ?? Infinity
    const keyOf = this.#options.keyOf
    for (let at = 0; at < rows.length;) {
      const part = (this.#part ??= this.#open())
      const slice = rows.slice(at, at + limit - part.rows)
      at += slice.length
      if (part.rows === 0) part.firstKey = keyOf?.(slice[0]!)
      part.lastKey = keyOf?.(slice.at(-1)!)
      this.#firstRow ??= slice[0]
      this.#index += slice.length
      part.rows += slice.length
      this.#rows += slice.length
      if (!part.format.write(rowBatch(slice))) await Promise.race([once(part.format, 'drain'), part.done])
      if (part.rows >= limit) await this.#cut(part)
    }
  }

  // Rows into the held part; past HOLD_BYTES, the part gets its stages and its bytes go out first.
  #hold(rows: readonly Row[]): void {
    const held = this.#held!
    this.#firstRow ??= rows[0]
    this.#rows += rows.length
    if (!held.add(rows, this.#options.keyOf)) return
    this.#held = undefined
    held.handOver((this.#part = this.#open())) // (its format is the held one: #nextFormat)
  }

  // The held part, written whole (a partition that ended small).
  async #writeHeld(held: HeldPart): Promise<void> {
    this.#held = undefined
    if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped')
    const sink = this.#fileSink(++this.#count)
    this.#nextFormat = undefined
    const part = await held.write(sink, this.#options.compression)
    this.#closedBytes += part.bytes
    this.#closedUncompressed += part.uncompressed
    this.#record(sink, part)
  }

  // Part `n`'s file or object, named for this run; a failed run removes it.
  #fileSink(n: number): Sink<L> & Discardable {
    const { files } = this.#options.target as { files: PartStore<L> }
    const name = partPath(files.name, this.#run, n)
    return this.#opened.set(name, files.sink(name)).get(name)!
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
    // A batch or a cut still under way when the run was stopped: no part may start any more (its
    // clean-up has listed the parts already).
    if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped')
    const format = this.#nextFormat
    if (!format) throw new ExportError('ERR_INVALID_OPTION', 'options', 'A split export needs a format with nextPart(), such as csv() or parquet()')
    this.#nextFormat = undefined
    const n = ++this.#count
    const target = this.#options.target
    const sink = 'segments' in target ? target.segments.partSink(n, () => part.last) : this.#fileSink(n)
    const part: OpenPart<L> = new OpenPart(n, format, this.#options.compression?.stage(), sink, this.#options.compression?.name)
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

  // Segments: this run ends with this part (its rows, no end of the output), once every part has landed.
  async #pause(part: OpenPart<L>): Promise<void> {
    await this.#cut(part)
    await this.#closing
    this.#paused = true
  }

  async #finishPart(part: OpenPart<L>, previous: Promise<void> | undefined): Promise<void> {
    await part.done
    await previous
    this.#finishing.delete(part)
    this.#closedBytes += part.digest.bytes
    this.#closedUncompressed += part.counter.bytes
    const { rows, firstKey, lastKey, digest } = part
    const info = this.#record(part.sink, { rows, bytes: digest.bytes, sha256: digest.sha256!, firstKey, lastKey })
    await this.#segments?.partDone(info, part.last)
  }

  #record(sink: Sink<L>, part: Pick<PartInfo<L>, 'rows' | 'bytes' | 'sha256' | 'firstKey' | 'lastKey'>): PartInfo<L> {
    const { location, checksum } = sink
    const name = baseName(locationName(location!) ?? `part-${this.#parts.length + 1}`)
    const info: PartInfo<L> = { name, location: location!, rows: part.rows, bytes: part.bytes, sha256: part.sha256, ...(checksum && { checksum }) }
    if (this.#options.keyOf) Object.assign(info, { firstKey: part.firstKey, lastKey: part.lastKey })
    this.#parts.push(info)
    return info
  }

  async #finish(): Promise<void> {
    // An export of no rows still has one part: a valid empty file (a CSV header, `[]`).
    const last = this.#part ?? (this.#count === 0 && !this.#held ? this.#open() : undefined)
    if (this.#held) await this.#writeHeld(this.#held)
    else if (last) {
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
    if (this.#options.commits === false) {
      if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped')
      this.#partsDone = true
      // One of thousands of partitions: the next part's format (and its buffers) is not kept.
      this.#nextFormat?.destroy()
      this.#nextFormat = undefined
      return
    }
    const { format } = this.#options
    const store = (this.#options.target as { files: PartStore<L> }).files
    const manifest = buildManifest(
      baseName(store.name),
      { ...partsKind(format, this.#options.compression), columns: this.#options.columns() ?? (this.#firstRow && Object.keys(this.#firstRow)) },
      this.#parts,
    )
    this.#manifest = manifest
    // The commit point: once the manifest is started, its outcome decides; never after a stop.
    if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped before its manifest was written')
    const committing = commitManifest(store, manifestBytes(manifest), manifest, () => this.#stopped)
    this.#committing = committing
    const outcome = await committing
    if (outcome.landed === true) {
      this.#location = outcome.location
      this.#leftBehind = outcome.leftBehind
      return
    }
    throw commitError(outcome)
  }

  // A failure or an abort: the open part's stages clean up after themselves (temporary file,
  // multipart upload); every part this run opened is removed, unless the manifest has landed (or
  // may have: then they are kept and named in leftBehind). Nothing another run wrote is touched.
  async #stop(error: Error | null): Promise<void> {
    const unfinished = this.#openParts()
    const unaborted: string[] = [] // what an unfinished part's sink could not remove (an upload it could not abort)
    for (const part of unfinished) {
      part.format.destroy(error ?? new Error('stopped'))
      await part.done.catch(() => {})
      await whenClosed(part.sink)
      unaborted.push(...(part.sink.leftBehind ?? []))
    }
    // A held part being written whole: its sink alone, with no stage listening for its error
    // (unheard, it would be thrown, and its 'close' never come). What it could not remove is named.
    for (const sink of this.#opened.values())
      if (sink.location === undefined && !sink.closed) {
        sink.on('error', () => {})
        await whenClosed(sink.destroy(error ?? new Error('stopped')))
        unaborted.push(...(sink.leftBehind ?? []))
      }
    await this.#closing?.catch(() => {})
    this.#nextFormat?.destroy()
    // A completion already sent decides: once the commit has landed, the export has.
    const outcome = (await this.#committing?.catch(() => undefined)) as { landed?: unknown } | undefined
    if (this.#segments) return // a failed attempt keeps its segments for the next one
    if (outcome?.landed === true || this.location !== undefined || this.#partsDone) return
    if (outcome?.landed === 'unknown') {
      this.#leftBehind = [...this.#opened.keys()].reverse()
      return
    }
    this.#leftBehind = [...unaborted, ...(await this.#removeOpened())]
  }

  /** `commits: false`: every part has landed, and they stay until `discardParts()`. */
  get partsDone(): boolean {
    return this.#partsDone
  }

  /**
   * A partition's parts (`commits: false`) once its export has failed after they landed: removes
   * every part this writer wrote; resolves to what could not be removed.
   */
  async discardParts(): Promise<string[]> {
    this.#leftBehind = await this.#removeOpened()
    return this.#leftBehind
  }

  // A sink that committed takes its own back (a file sink also the folders it made); any other
  // name is removed from the store: a part whose answer was lost may be there all the same.
  #removeOpened(): Promise<string[]> {
    const store = (this.#options.target as { files: PartStore<L> }).files
    return removeAll([...this.#opened.keys()].reverse(), (name) => {
      const sink = this.#opened.get(name)!
      return sink.location !== undefined ? sink.discard() : store.remove(name)
    })
  }
}

function takesBatches(options: SplitWriterOptions<object>): boolean {
  const { target, limits, transforms, format } = options
  // (No limit at all: a partition of a partitioned export, one part.)
  return 'files' in target && limits.bytes === undefined && transforms.length === 0 && format.takesBatches === true
}

/** What ends the pipeline of a paused run (exportStream resolves with `paused: true` instead). */
const pausedError = () => new ExportError('ERR_ABORTED', 'sink', 'The export paused at a part boundary, to continue in another run')

/** A segment format whose end is not written (yet). */
function asSegment(format: (Format & { writesEnd: boolean }) | undefined, writesEnd: boolean): Format | undefined {
  if (format) format.writesEnd = writesEnd
  return format
}
