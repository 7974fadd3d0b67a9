import { Transform } from 'node:stream'
import { ExportError, invalidOption } from '../core/errors.js'
import { isRowBatch, rowBatch, WAITING_CHUNKS, type Row } from '../core/types.js'

/**
 * A row function: return the row to write (the same object changed, or a new one), or `undefined`
 * to drop it. May be async; the next row is read only after it settles, so order is kept and a
 * slow function slows the source instead of queueing rows.
 */
// `any`: a transform reads the columns it knows (`row.email`) without a cast; what it returns is checked.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RowTransform = (row: any, index: number) => unknown

/** Checks a `transform` option (a function or an array of them) and returns the list. */
export function checkTransforms(value: unknown, name = 'transform'): RowTransform[] {
  const list = Array.isArray(value) ? value : [value]
  if (list.length === 0) invalidOption(name, 'a function or a non-empty array of functions', value)
  list.forEach((fn, i) => {
    if (typeof fn !== 'function') invalidOption(Array.isArray(value) ? `${name}[${i}]` : name, 'a function', fn)
  })
  return list as RowTransform[]
}

const isThenable = (value: unknown): value is PromiseLike<unknown> => typeof (value as PromiseLike<unknown> | null)?.then === 'function'

const transformError = (error: unknown, index: number) =>
  new ExportError('ERR_TRANSFORM', 'transform', `Transform failed on row ${index}: ${(error as Error)?.message ?? error}`, { cause: error })

/**
 * Applies the functions in order to one row: the result, or undefined when one of them drops the
 * row (returns undefined or null). Synchronous functions stay on the synchronous path; the first
 * promise makes the result a promise. A throw or rejection is ERR_TRANSFORM naming the row.
 */
export function applyTransforms(fns: RowTransform[], row: unknown, index: number): unknown {
  let value = row
  for (let i = 0; i < fns.length; i++) {
    try {
      value = fns[i]!(value, index)
    } catch (error) {
      throw transformError(error, index)
    }
    if (isThenable(value)) return finishAsync(fns, i + 1, value, index)
    if (value === undefined || value === null) return undefined
  }
  return value
}

async function finishAsync(fns: RowTransform[], from: number, pending: PromiseLike<unknown>, index: number): Promise<unknown> {
  try {
    let value = await pending
    for (let i = from; i < fns.length && value !== undefined && value !== null; i++) value = await fns[i]!(value, index)
    return value ?? undefined
  } catch (error) {
    throw transformError(error, index)
  }
}

/**
 * The row transform stage: applies the functions in order to each row (`index` counts source
 * rows from 0). A throw or rejection fails the stream with ERR_TRANSFORM naming the row index.
 *
 * @example pipeline(source, mapRows((row) => ({ ...row, email: mask(row.email) })), csv(), sink)
 */
export function mapRows(transform: RowTransform | RowTransform[]): Transform & { readonly takesBatches: true } {
  const fns = checkTransforms(transform)
  let index = 0
  const stage = new Transform({
    objectMode: true,
    highWaterMark: WAITING_CHUNKS,
    transform(chunk: unknown, _encoding, callback) {
      // A batch (see SourceExtras.sendBatches) leaves as a batch of the rows kept.
      const rows = isRowBatch(chunk) ? chunk.rows : [chunk]
      const kept: unknown[] = []
      const next = (from: number): void => {
        for (let i = from; i < rows.length; i++) {
          let result: unknown
          try {
            result = applyTransforms(fns, rows[i], index++)
          } catch (error) {
            return callback(error as Error)
          }
          if (isThenable(result)) {
            result.then((value) => {
              if (value !== undefined) kept.push(value)
              next(i + 1)
            }, callback)
            return
          }
          // An undefined result keeps nothing: the row is dropped.
          if (result !== undefined) kept.push(result)
        }
        if (kept.length === 0) callback()
        else callback(null, isRowBatch(chunk) ? rowBatch(kept as Row[]) : kept[0])
      }
      next(0)
    },
  })
  return Object.assign(stage, { takesBatches: true as const })
}
