import { Transform } from 'node:stream'
import { ExportError, invalidOption } from '../errors.js'

/**
 * A row function: return the row to write (the same object changed, or a new one), or `undefined`
 * to drop it. May be async; the next row is read only after it settles, so order is kept and a
 * slow function slows the source instead of queueing rows.
 */
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

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as PromiseLike<unknown> | null)?.then === 'function'

/**
 * The row transform stage: applies the functions in order to each row (`index` counts source
 * rows from 0). A throw or rejection fails the stream with ERR_TRANSFORM naming the row index.
 *
 * @example pipeline(source, mapRows((row) => ({ ...row, email: mask(row.email) })), csv(), sink)
 */
export function mapRows(transform: RowTransform | RowTransform[]): Transform {
  const fns = checkTransforms(transform)
  let index = 0

  const fail = (error: unknown, at: number) =>
    new ExportError('ERR_TRANSFORM', 'transform', `Transform failed on row ${at}: ${(error as Error)?.message ?? error}`, { cause: error })

  return new Transform({
    objectMode: true,
    transform(row: unknown, _encoding, callback) {
      const at = index++
      let value: unknown = row
      // Synchronous functions stay on the fast path; the first promise switches to awaiting.
      for (let i = 0; i < fns.length; i++) {
        if (value === undefined) return callback()
        try {
          value = fns[i](value, at)
        } catch (error) {
          return callback(fail(error, at))
        }
        if (isThenable(value)) {
          const rest = fns.slice(i + 1)
          Promise.resolve(value)
            .then(async (current) => {
              for (const fn of rest) {
                if (current === undefined) break
                current = await fn(current, at)
              }
              return current
            })
            .then(
              (result) => callback(null, result ?? undefined),
              (error) => callback(fail(error, at)),
            )
          return
        }
      }
      callback(null, value ?? undefined)
    },
  })
}
