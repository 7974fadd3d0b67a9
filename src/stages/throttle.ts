import { Transform } from 'node:stream'
import { invalidOption } from '../core/errors.js'
import { isEncodedRows, isRowBatch, type SourceExtras } from '../core/types.js'

/** The rates an export may not exceed (see `ExportOptions.maxRowsPerSecond`). */
export interface ThrottleRates {
  rowsPerSecond?: number
  bytesPerSecond?: number
}

/**
 * `maxRowsPerSecond` and `maxBytesPerSecond` of an export's options, checked against its source;
 * `undefined` when neither is set.
 */
export function checkRates(
  options: { maxRowsPerSecond?: unknown; maxBytesPerSecond?: unknown },
  source: Pick<SourceExtras, 'readsAhead' | 'preformatted'>,
): ThrottleRates | undefined {
  const { maxRowsPerSecond, maxBytesPerSecond } = options
  for (const [name, value] of Object.entries({ maxRowsPerSecond, maxBytesPerSecond }))
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value > 0)) invalidOption(name, 'a positive number', value)
  if (maxRowsPerSecond === undefined && maxBytesPerSecond === undefined) return undefined
  const name = maxRowsPerSecond === undefined ? 'maxBytesPerSecond' : 'maxRowsPerSecond'
  // Held back, a sharded source still reads on every core into its spill files: the database would not read less.
  if (source.readsAhead) invalidOption(name, 'unset for a source that reads ahead on its own (a sharded source): use a plain or keyset source', options[name])
  // A COPY's rows are counted when it ends: its bytes are what can be held to a rate.
  if (source.preformatted && maxRowsPerSecond !== undefined)
    invalidOption('maxRowsPerSecond', 'unset for a source of formatted bytes (COPY counts its rows at the end): use maxBytesPerSecond', maxRowsPerSecond)
  return { rowsPerSecond: maxRowsPerSecond as number | undefined, bytesPerSecond: maxBytesPerSecond as number | undefined }
}

/**
 * The stage right after the source that holds the export to its rates: a chunk is handed on at
 * once, and the next one taken only when the rows (and bytes) so far are due at the rate. The
 * stage keeps nothing: while it waits, the source's own buffer fills and the source stops reading,
 * so the database reads (and sends) less, not a buffer that grows. Time lost downstream (a slow
 * sink) is made up for only up to one second of the rate: the rate is never exceeded for longer.
 */
export class Throttle extends Transform {
  readonly #rates: ThrottleRates
  readonly #bytes: () => number
  readonly #rowsElsewhere: () => number
  #rows = 0
  #started: number | undefined // moved on when the export falls more than a second behind
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
    let wait = this.#started + due - performance.now()
    if (wait < -1000) {
      // Behind by more than a second (a slow sink): that time is not made up at full speed.
      this.#started += -wait - 1000
      wait = -1000
    }
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
