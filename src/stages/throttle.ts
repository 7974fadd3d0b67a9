import { Transform } from 'node:stream'
import { invalidOption } from '../core/errors.js'
import { isEncodedRows, isRowBatch } from '../core/types.js'

/** The rates an export may not exceed (see `ExportOptions.maxRowsPerSecond`). */
export interface ThrottleRates {
  rowsPerSecond?: number
  bytesPerSecond?: number
}

/** `maxRowsPerSecond` and `maxBytesPerSecond` of an export's options, checked; `undefined` when neither is set. */
export function checkRates(options: { maxRowsPerSecond?: unknown; maxBytesPerSecond?: unknown }): ThrottleRates | undefined {
  const { maxRowsPerSecond, maxBytesPerSecond } = options
  for (const [name, value] of Object.entries({ maxRowsPerSecond, maxBytesPerSecond }))
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value > 0)) invalidOption(name, 'a positive number', value)
  if (maxRowsPerSecond === undefined && maxBytesPerSecond === undefined) return undefined
  return { rowsPerSecond: maxRowsPerSecond as number | undefined, bytesPerSecond: maxBytesPerSecond as number | undefined }
}

/**
 * The stage right after the source that holds the export to its rates: a chunk is handed on at
 * once, and the next one taken only when the rows (and bytes) so far are due — as a token bucket
 * of one chunk would. The stage keeps nothing: while it waits, the source's own buffer fills and
 * the source stops reading, so the database reads (and sends) less, not a buffer that grows.
 */
export class Throttle extends Transform {
  readonly #rates: ThrottleRates
  readonly #bytes: () => number
  readonly #rowsElsewhere: () => number
  #rows = 0
  #started: number | undefined
  #timer: NodeJS.Timeout | undefined

  /**
   * @param bytes the bytes written so far (the format's output: rows become bytes after this stage).
   * @param rows the rows so far when the chunks do not say (a source of formatted bytes, COPY).
   */
  constructor(rates: ThrottleRates, bytes: () => number, rows: () => number) {
    super({ objectMode: true, highWaterMark: 1 })
    this.#rates = rates
    this.#bytes = bytes
    this.#rowsElsewhere = rows
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null, chunk?: unknown) => void): void {
    this.#started ??= performance.now()
    if (isRowBatch(chunk)) this.#rows += chunk.rows.length
    else if (isEncodedRows(chunk)) this.#rows += chunk.encodedRows
    else if (!Buffer.isBuffer(chunk) && !(chunk instanceof Uint8Array)) this.#rows += 1
    this.push(chunk)
    const { rowsPerSecond, bytesPerSecond } = this.#rates
    const rows = Math.max(this.#rows, this.#rowsElsewhere())
    // When the work done so far is due, in milliseconds after the first chunk.
    const due = Math.max(rowsPerSecond ? (rows / rowsPerSecond) * 1000 : 0, bytesPerSecond ? (this.#bytes() / bytesPerSecond) * 1000 : 0)
    const wait = this.#started + due - performance.now()
    if (wait < 1) return callback()
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      callback()
    }, wait)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#timer)
    callback(error)
  }
}
