import { Readable } from 'node:stream'
import { toExportError } from '../core/errors.js'
import { rowBatch, type ColumnType, type Row, type SourceExtras } from '../core/types.js'
import { setHighWaterMark } from './high-water-mark.js'

export interface KeysetPagesOptions<R> {
  /** Rows per page; also the stream's high-water mark, so the next page is fetched while this one drains. */
  batchSize: number
  /** Key to start after (undefined: from the first row). */
  after: unknown
  keyOf(row: R): unknown
  /** Fetches at most batchSize rows with a key after `last` (undefined: from the start), in key order. */
  fetchPage(last: unknown): Promise<R[]>
  /** Frees what the pages used: after the last page, and on destroy with the error of a failed fetch. Idempotent. */
  release(failure?: Error): Promise<void>
}

/**
 * A Readable over keyset pages (`key > last ORDER BY key LIMIT n`), shared by the Postgres and
 * MongoDB keyset sources: no long-lived cursor or transaction, and a checkpoint to resume from.
 */
export class KeysetReadable<R = unknown> extends Readable implements SourceExtras {
  readonly #options: KeysetPagesOptions<R>
  #last: unknown
  #done = false
  #failure: Error | undefined
  // Keys of the last rows of the chunks pushed lately (rows, or batches once asked for): the
  // checkpoint is the one before the chunks still in our buffer.
  #recent: unknown[] = []
  #batches = false
  /** Row count for progress; set by the source that owns the pages. */
  countRows?: () => Promise<number | undefined>
  /** Column types, once the first page has described them; set by the source that owns the pages. */
  columnTypes?: () => ColumnType[] | undefined

  constructor(options: KeysetPagesOptions<R>) {
    super({ objectMode: true, highWaterMark: options.batchSize })
    this.#options = options
    this.#last = options.after
  }

  /**
   * Key of the last row this stream has handed to its reader (rows fetched but still buffered do
   * not count); `after` (or undefined) before the first. It runs ahead of what reached a
   * destination: save `result.checkpoint` of exportStream instead.
   */
  get checkpoint(): unknown {
    const index = this.#recent.length - 1 - this.readableLength
    return index >= 0 ? this.#recent[index] : this.#options.after
  }

  sendBatches(): void {
    this.#batches = true
    setHighWaterMark(this, 1) // a page buffered while the next is fetched, as with rows
  }

  /** The key of a row of this source (what `checkpoint` and `after` hold); bound, so it can be passed on. */
  readonly keyOf = (row: unknown): unknown => this.#options.keyOf(row as R)

  override _read(): void {
    this.#next().catch((error: Error) => {
      this.#failure = error
      this.destroy(toExportError(error, 'ERR_SOURCE', 'source'))
    })
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#options.release(this.#failure).then(
      () => callback(error),
      () => callback(error),
    )
  }

  async #next(): Promise<void> {
    if (this.#done) return
    const { batchSize, keyOf, fetchPage, release } = this.#options
    const rows = await fetchPage(this.#last)
    if (this.destroyed) return
    const lastRow = rows[rows.length - 1]
    if (lastRow !== undefined) this.#last = keyOf(lastRow)
    this.#done = rows.length < batchSize
    if (this.#batches) {
      if (lastRow !== undefined) {
        this.#recent = [...this.#recent.slice(-2), this.#last]
        this.push(rowBatch(rows as Row[]))
      }
    } else {
      this.#recent = this.#recent.concat(rows.map(keyOf))
      if (this.#recent.length > 3 * batchSize) this.#recent = this.#recent.slice(-2 * batchSize)
      for (const row of rows) this.push(row)
    }
    if (this.#done) {
      await release()
      this.push(null)
    }
  }
}

/** A keyset-paged source (see KeysetReadable). */
export function keysetPages<R>(options: KeysetPagesOptions<R>): KeysetReadable<R> {
  return new KeysetReadable(options)
}
