import { Transform } from 'node:stream'
import { ExportError } from '../errors.js'
import { checkBoolean, checkFunction, checkNonNegativeInteger, checkObject, checkTimerMs } from '../options.js'

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
  /** Where to read the uncompressed byte count from. Default: same as `bytes`. */
  uncompressedBytes?: () => number
  /** Where to read the acknowledged byte count from, e.g. `() => sink.uploadedBytes`. Default: none. */
  uploadedBytes?: () => number
  /** Where to read the source's input progress from, e.g. `() => source` for `csvSource()`. Default: none. */
  input?: () => { bytesRead: number; totalBytes: number | undefined }
}

/** A pass-through stage that counts what flows through it and reports progress. */
export interface ProgressTap extends Transform {
  readonly bytes: number
  /** Expected row count; may be set while the stream runs (e.g. once a COUNT query returns). */
  totalRows: number | undefined
  /** The current figures. */
  snapshot(): Progress
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

/**
 * Progress tap: put it anywhere in a pipeline. Counts bytes (or rows, for object-mode chunks)
 * and calls `onProgress` at most every `intervalMs`, and once at the end.
 */
export function progress(options: ProgressOptions = {}): ProgressTap {
  checkObject('options', options)
  const {
    onProgress,
    intervalMs = 1000,
    objectMode = false,
    rows: readRows,
    uncompressedBytes: readUncompressed,
    uploadedBytes: readUploaded,
    input: readInput,
  } = options
  if (onProgress !== undefined) checkFunction('onProgress', onProgress)
  checkTimerMs('intervalMs', intervalMs)
  checkBoolean('objectMode', objectMode)
  if (options.totalRows !== undefined) checkNonNegativeInteger('totalRows', options.totalRows)
  if (readRows !== undefined) checkFunction('rows', readRows)
  if (readUncompressed !== undefined) checkFunction('uncompressedBytes', readUncompressed)
  if (readUploaded !== undefined) checkFunction('uploadedBytes', readUploaded)
  if (readInput !== undefined) checkFunction('input', readInput)

  const started = performance.now()
  let bytes = 0
  let rowCount = 0
  let timer: NodeJS.Timeout | undefined

  // `final`: the last report, made once every row has passed.
  const snapshot = (final = false): Progress => {
    const elapsedMs = performance.now() - started
    const rows = readRows ? readRows() : rowCount
    const rowsPerSecond = elapsedMs > 0 ? (rows * 1000) / elapsedMs : 0
    const report: Progress = {
      rows,
      bytes,
      uncompressedBytes: readUncompressed ? readUncompressed() : bytes,
      elapsedMs,
      rowsPerSecond,
    }
    if (readUploaded) report.uploadedBytes = readUploaded()
    const { totalRows } = tap
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

  let pending = false
  const failure = (error: unknown) => new ExportError('ERR_PROGRESS', 'progress', `onProgress failed: ${(error as Error)?.message ?? error}`, { cause: error })
  // Calls onProgress; a returned promise is awaited (one at a time: a slow callback skips ticks).
  const report = async (final = false): Promise<void> => {
    if (!onProgress || pending) return
    pending = true
    try {
      await onProgress(snapshot(final))
    } catch (error) {
      throw failure(error)
    } finally {
      pending = false
    }
  }

  const tap = new Transform({
    objectMode,
    transform(chunk: unknown, _encoding, callback) {
      if (objectMode) rowCount++
      else bytes += (chunk as Buffer).length
      if (onProgress && timer === undefined) {
        timer = setInterval(() => void report().catch((error: Error) => tap.destroy(error)), intervalMs).unref()
      }
      callback(null, chunk)
    },
    flush(callback) {
      clearInterval(timer)
      pending = false // the final report is always made
      report(true).then(() => callback(), callback)
    },
    destroy(error, callback) {
      clearInterval(timer)
      callback(error)
    },
  }) as ProgressTap
  Object.defineProperties(tap, {
    bytes: { get: () => bytes, enumerable: true },
    snapshot: { value: snapshot },
  })
  tap.totalRows = options.totalRows
  return tap
}
