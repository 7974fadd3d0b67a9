import { Transform } from 'node:stream'
import { ExportError } from '../errors.js'
import { checkBoolean, checkFunction, checkNonNegativeInteger, checkObject, checkPositiveInteger } from '../options.js'

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
  /** 0-100, when `totalRows` is known. */
  percent?: number
  /** Estimated time left, when `totalRows` is known and rows are moving. */
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
 * Progress tap: put it anywhere in a pipeline. Counts bytes (or rows, for object-mode chunks)
 * and calls `onProgress` at most every `intervalMs`, and once at the end.
 */
export function progress(options: ProgressOptions = {}): ProgressTap {
  checkObject('options', options)
  const { onProgress, intervalMs = 1000, objectMode = false, rows: readRows, uncompressedBytes: readUncompressed, uploadedBytes: readUploaded } = options
  if (onProgress !== undefined) checkFunction('onProgress', onProgress)
  checkPositiveInteger('intervalMs', intervalMs)
  checkBoolean('objectMode', objectMode)
  if (options.totalRows !== undefined) checkNonNegativeInteger('totalRows', options.totalRows)
  if (readRows !== undefined) checkFunction('rows', readRows)
  if (readUncompressed !== undefined) checkFunction('uncompressedBytes', readUncompressed)
  if (readUploaded !== undefined) checkFunction('uploadedBytes', readUploaded)

  const started = performance.now()
  let bytes = 0
  let rowCount = 0
  let timer: NodeJS.Timeout | undefined

  const snapshot = (): Progress => {
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
    if (totalRows !== undefined) {
      report.totalRows = totalRows
      report.percent = totalRows === 0 ? 100 : Math.min(100, (rows / totalRows) * 100)
      if (rowsPerSecond > 0) report.etaMs = (Math.max(0, totalRows - rows) / rowsPerSecond) * 1000
    }
    return report
  }

  let pending = false
  const failure = (error: unknown) =>
    new ExportError('ERR_PROGRESS', 'progress', `onProgress failed: ${(error as Error)?.message ?? error}`, { cause: error })
  // Calls onProgress; a returned promise is awaited (one at a time: a slow callback skips ticks).
  const report = async (): Promise<void> => {
    if (!onProgress || pending) return
    pending = true
    try {
      await onProgress(snapshot())
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
        timer = setInterval(() => report().catch((error: Error) => tap.destroy(error)), intervalMs).unref()
      }
      callback(null, chunk)
    },
    flush(callback) {
      clearInterval(timer)
      pending = false // the final report is always made
      report().then(() => callback(), callback)
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
