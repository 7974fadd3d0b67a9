import { Transform } from 'node:stream'
import { ExportError } from '../core/errors.js'
import { checkBoolean, checkFunction, checkNonNegativeInteger, checkObject, checkTimerMs, optionNames } from '../core/options.js'

/** A progress report. Rates and estimates are computed from the start of the stream. */
export interface Progress {
  /** Rows exported so far. */
  rows: number
  /** Bytes that have passed the tap (after gzip when gzip is on: what the sink received). */
  bytes: number
  /** Bytes before compression. Equal to `bytes` without gzip. */
  uncompressedBytes: number
  /** Bytes the destination has acknowledged (S3: completed parts), for sinks that report it. */
  uploadedBytes?: number
  elapsedMs: number
  rowsPerSecond: number
  /** Expected row count, when the caller or the source knows it. */
  totalRows?: number
  /** Bytes the source has read, for file sources (compressed bytes of a .gz). */
  inputBytes?: number
  /** Size of the source file, when known. */
  inputTotalBytes?: number
  /** 0-100, from `totalRows`, or else from `inputBytes / inputTotalBytes`. */
  percent?: number
  /** Estimated time left, at the average rate so far, when `percent` is known and moving. */
  etaMs?: number
}

export interface ProgressOptions {
  /** Called every `intervalMs` while data flows and once more at the end. A throw or a rejected promise fails the export (ERR_PROGRESS). */
  onProgress?: (progress: Progress) => void | Promise<unknown>
  /** Minimum time between reports. Default 1000. */
  intervalMs?: number
  /** Expected row count (for percent and ETA). */
  totalRows?: number
  /** Place the tap before the format stage (rows in, rows out): each chunk counts as a row. Default `false`. */
  objectMode?: boolean
  /** Where to read the row count from, e.g. `() => format.rows`. Default: rows counted by an object-mode tap, else 0. */
  rows?: () => number
  /** Where to read the byte count from, e.g. the parts of a split export. Default: bytes that passed the tap. */
  bytes?: () => number
  /** Where to read the uncompressed byte count from. Default: same as `bytes`. */
  uncompressedBytes?: () => number
  /** Where to read the acknowledged byte count from, e.g. `() => sink.uploadedBytes`. Default: none. */
  uploadedBytes?: () => number
  /** Where to read the source's input progress from, e.g. `() => source` for `csvSource()`. Default: none. */
  input?: () => { bytesRead: number; totalBytes: number | undefined }
}

/**
 * Percent and ETA from the fraction done after `elapsedMs`, at the average rate so far. 100% only
 * when `final`: a total reached early (an estimate, input bytes read ahead) is not the end.
 * Shared by the progress tap and the export job processor.
 */
export function estimate(fraction: number | undefined, elapsedMs: number, final = false): { percent?: number; etaMs?: number } {
  if (fraction === undefined) return {}
  const done = final ? 1 : Math.min(0.999, fraction)
  return done > 0 ? { percent: done * 100, etaMs: (elapsedMs / done) * (1 - done) } : { percent: 0 }
}

/** Progress options checked and defaulted, apart from any stream (see `progress`). */
export type NormalizedProgressOptions = Readonly<
  Required<Pick<ProgressOptions, 'intervalMs' | 'objectMode'>> & Omit<ProgressOptions, 'intervalMs' | 'objectMode'>
>

const PROGRESS_OPTION_NAMES = optionNames<ProgressOptions>({
  onProgress: true,
  intervalMs: true,
  totalRows: true,
  objectMode: true,
  rows: true,
  bytes: true,
  uncompressedBytes: true,
  uploadedBytes: true,
  input: true,
})

/** Checks progress options and fills in the defaults; throws ERR_INVALID_OPTION naming the option. */
export function normalizeProgressOptions(options: ProgressOptions = {}): NormalizedProgressOptions {
  checkObject('options', options, PROGRESS_OPTION_NAMES)
  const { onProgress, intervalMs = 1000, objectMode = false, totalRows, rows, bytes, uncompressedBytes, uploadedBytes, input } = options
  if (onProgress !== undefined) checkFunction('onProgress', onProgress)
  checkTimerMs('intervalMs', intervalMs)
  checkBoolean('objectMode', objectMode)
  if (totalRows !== undefined) checkNonNegativeInteger('totalRows', totalRows)
  if (rows !== undefined) checkFunction('rows', rows)
  if (bytes !== undefined) checkFunction('bytes', bytes)
  if (uncompressedBytes !== undefined) checkFunction('uncompressedBytes', uncompressedBytes)
  if (uploadedBytes !== undefined) checkFunction('uploadedBytes', uploadedBytes)
  if (input !== undefined) checkFunction('input', input)
  return Object.freeze({ onProgress, intervalMs, objectMode, totalRows, rows, bytes, uncompressedBytes, uploadedBytes, input })
}

/** A pass-through stage that counts what flows through it and reports progress (see `progress`). */
export class ProgressTap extends Transform {
  /** Expected row count; may be set while the stream runs (e.g. once a COUNT query returns). */
  totalRows: number | undefined
  /** A count is on its way (see `totalRows`): if the rows end first, the final report's total is the rows. */
  countPending = false
  readonly #options: NormalizedProgressOptions
  readonly #started = performance.now()
  #bytes = 0
  #rowCount = 0
  #timer: NodeJS.Timeout | undefined
  #pending = false

  constructor(options: NormalizedProgressOptions) {
    super({ objectMode: options.objectMode })
    this.#options = options
    this.totalRows = options.totalRows
  }

  /** Bytes that passed (zero for an object-mode tap), or as read from the `bytes` option. */
  get bytes(): number {
    return this.#options.bytes ? this.#options.bytes() : this.#bytes
  }

  /** The current figures; `final` for the last report, once every row has passed. */
  snapshot(final = false): Progress {
    const { rows: readRows, uncompressedBytes: readUncompressed, uploadedBytes: readUploaded, input: readInput } = this.#options
    const elapsedMs = performance.now() - this.#started
    const rows = readRows ? readRows() : this.#rowCount
    const bytes = this.bytes
    const report: Progress = {
      rows,
      bytes,
      uncompressedBytes: readUncompressed ? readUncompressed() : bytes,
      elapsedMs,
      rowsPerSecond: elapsedMs > 0 ? (rows * 1000) / elapsedMs : 0,
    }
    if (readUploaded) report.uploadedBytes = readUploaded()
    const totalRows = this.totalRows ?? (final && this.countPending ? rows : undefined)
    let fraction: number | undefined
    if (totalRows !== undefined) {
      if (final) {
        report.totalRows = rows
        fraction = 1
      } else if (rows <= totalRows) {
        report.totalRows = totalRows
        fraction = totalRows === 0 ? 1 : rows / totalRows
      }
      // else: more rows than an estimate said: the total is unknown from here on, not "100%".
    }
    if (readInput) {
      const { bytesRead, totalBytes } = readInput()
      report.inputBytes = bytesRead
      if (totalBytes !== undefined) {
        report.inputTotalBytes = totalBytes
        fraction ??= totalBytes === 0 ? 1 : bytesRead / totalBytes
      }
    }
    return Object.assign(report, estimate(fraction, elapsedMs, final))
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: (error: Error | null, chunk: unknown) => void): void {
    if (this.#options.objectMode) this.#rowCount++
    else this.#bytes += (chunk as Buffer).length
    if (this.#timer === undefined) this.start()
    callback(null, chunk)
  }

  /**
   * Starts the periodic reports (the first chunk does it). For a tap outside the stream, reading
   * its figures from elsewhere (`rows`, `bytes`): end it for the final report.
   */
  start(): void {
    if (!this.#options.onProgress || this.#timer !== undefined) return
    this.#timer = setInterval(() => void this.#report().catch((error: Error) => this.destroy(error)), this.#options.intervalMs).unref()
  }

  override _flush(callback: (error?: Error | null) => void): void {
    clearInterval(this.#timer)
    this.#pending = false // the final report is always made
    this.#report(true).then(() => callback(), callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearInterval(this.#timer)
    callback(error)
  }

  // Calls onProgress; a returned promise is awaited (one at a time: a slow callback skips ticks).
  async #report(final = false): Promise<void> {
    const { onProgress } = this.#options
    if (!onProgress || this.#pending) return
    this.#pending = true
    try {
      await onProgress(this.snapshot(final))
    } catch (error) {
      throw new ExportError('ERR_PROGRESS', 'progress', `onProgress failed: ${(error as Error)?.message ?? String(error)}`, { cause: error })
    } finally {
      this.#pending = false
    }
  }
}

/**
 * Progress tap: put it anywhere in a pipeline. Counts bytes (or rows, for object-mode chunks)
 * and calls `onProgress` at most every `intervalMs`, and once at the end.
 */
export function progress(options: ProgressOptions = {}): ProgressTap {
  return new ProgressTap(normalizeProgressOptions(options))
}
