import { Readable } from 'node:stream'
import { ExportError, invalidOption } from '../core/errors.js'
import { rowBatch, type Row, type SourceExtras } from '../core/types.js'
import { setHighWaterMark } from './high-water-mark.js'

/** Anything `fromIterable` accepts. */
export type RowIterable<T extends object = object> = Iterable<T> | AsyncIterable<T> | Readable

/** True for an object-mode Readable (a row source as-is). */
function isObjectReadable(value: unknown): value is Readable {
  return value instanceof Readable && value.readableObjectMode
}

const isThenable = (value: unknown): value is PromiseLike<unknown> => typeof (value as PromiseLike<unknown> | null)?.then === 'function'

/** Rows per batch once batches are asked for; with a high-water mark of 2 batches, about 3 batches are held. */
const BATCH_ROWS = 500

/**
 * A Readable over an iterator, as Readable.from reads one (a promise among the rows awaited; the
 * iterator returned on destroy). Once `sendBatches` is called, a synchronous iterator's rows go in
 * batches of up to BATCH_ROWS, and an iterator of pages (`fromPages`) sends each page as a batch;
 * other async iterators' rows go one by one (a batch would hold back rows while the next is awaited).
 */
class IterableSource extends Readable implements SourceExtras {
  readonly #iterator: Iterator<unknown> | AsyncIterator<unknown>
  readonly #sync: boolean
  readonly #pages: boolean
  #batches = false
  #reading = false
  #rows = 0

  constructor(iterable: Iterable<unknown> | AsyncIterable<unknown>, pages = false) {
    super({ objectMode: true, highWaterMark: 16 })
    const async = (iterable as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator]
    this.#sync = async === undefined
    this.#pages = pages
    this.#iterator = async ? async.call(iterable) : (iterable as Iterable<unknown>)[Symbol.iterator]()
  }

  sendBatches(): void {
    if (!this.#sync && !this.#pages) return
    this.#batches = true
    setHighWaterMark(this, this.#pages ? 1 : 2)
  }

  override _read(): void {
    // A read while a pull is under way is answered by that pull's next push.
    if (this.#reading) return
    this.#reading = true
    this.#pull().catch((error: unknown) => this.destroy(error as Error))
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Returning the iterator runs a generator's `finally` (where a cursor is closed), at once
    // when the generator is paused at a yield.
    new Promise((resolve) => resolve(this.#iterator.return?.())).then(
      () => callback(error),
      (returnError: Error) => callback(error ?? returnError),
    )
  }

  /** Pushes rows (or batches) until the buffer is full or the rows end. */
  async #pull(): Promise<void> {
    let batch: Row[] = []
    for (;;) {
      const next = this.#sync ? (this.#iterator as Iterator<unknown>).next() : await this.#iterator.next()
      if (this.destroyed) return
      if (next.done) {
        if (batch.length > 0) this.push(rowBatch(batch))
        this.push(null)
        return
      }
      let value = next.value
      if (isThenable(value)) value = await value
      if (this.destroyed) return
      const rows = this.#pages ? (value as Row[]) : [value as Row]
      // null would end the stream early: a row lost without a word.
      for (const row of rows) if (row === null) throw new ExportError('ERR_SOURCE', 'source', `Row ${this.#rows} is null: rows are objects`)
      this.#rows += rows.length
      if (!this.#batches) {
        let room = true
        for (const row of rows) room = this.push(row)
        if (!room) return this.#full()
      } else if (this.#pages) {
        if (rows.length > 0 && !this.push(rowBatch(rows))) return this.#full()
      } else if (batch.push(rows[0]!) === BATCH_ROWS) {
        if (!this.push(rowBatch(batch))) return this.#full()
        batch = []
      }
    }
  }

  /** The buffer is full: the next `_read` pulls again. */
  #full(): void {
    this.#reading = false
  }
}

/** A row source over pages of rows (a driver's batches): each page is one batch when batches are asked for. */
export function fromPages(pages: AsyncIterable<Row[]>): Readable & SourceExtras {
  return new IterableSource(pages, true)
}

/**
 * A row source over an array, any Iterable or AsyncIterable (e.g. an async generator), or an
 * object-mode Readable (returned as it is). Destroying the stream returns the iterator, so a
 * generator's `finally` block runs (close your cursor there).
 */
export function fromIterable<T extends object = object>(rows: RowIterable<T>): Readable & SourceExtras {
  if (isObjectReadable(rows)) return rows
  const iterable = rows as Partial<Iterable<T> & AsyncIterable<T>> | null
  if (
    rows instanceof Readable ||
    typeof rows === 'string' ||
    typeof iterable !== 'object' ||
    iterable === null ||
    (typeof iterable[Symbol.iterator] !== 'function' && typeof iterable[Symbol.asyncIterator] !== 'function')
  ) {
    invalidOption('rows', 'an Iterable, an AsyncIterable or an object-mode Readable of rows', rows)
  }
  return new IterableSource(rows as Iterable<T> | AsyncIterable<T>)
}
