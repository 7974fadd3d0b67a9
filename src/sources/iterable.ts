import { Readable } from 'node:stream'
import { invalidOption } from '../errors.js'

/** Anything `fromIterable` accepts. */
export type RowIterable<T extends object = object> = Iterable<T> | AsyncIterable<T> | Readable

/** True for an object-mode Readable (a row source as-is). */
function isObjectReadable(value: unknown): value is Readable {
  return value instanceof Readable && value.readableObjectMode
}

/**
 * A row source over an array, any Iterable or AsyncIterable (e.g. an async generator), or an
 * object-mode Readable (returned as it is). Destroying the stream returns the iterator, so a
 * generator's `finally` block runs (close your cursor there).
 */
export function fromIterable<T extends object = object>(rows: RowIterable<T>): Readable {
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
  return Readable.from(rows as Iterable<T> | AsyncIterable<T>, { objectMode: true, highWaterMark: 16 })
}
