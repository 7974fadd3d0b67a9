import { Readable } from 'node:stream'
import { toExportError } from '../errors.js'

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

/** A keyset-paged source with a resumable checkpoint. */
export interface KeysetReadable extends Readable {
  /**
   * Key of the last row this stream has handed to its reader (rows fetched but still buffered do
   * not count); `after` (or undefined) before the first. Pass it as `after` to resume with the next row.
   */
  readonly checkpoint: unknown
  /** The key of a row of this source (what `checkpoint` and `after` hold). */
  keyOf(row: unknown): unknown
}

/**
 * A Readable over keyset pages (`key > last ORDER BY key LIMIT n`), shared by the Postgres and
 * MongoDB keyset sources: no long-lived cursor or transaction, and a checkpoint to resume from.
 */
export function keysetPages<R>({ batchSize, after, keyOf, fetchPage, release }: KeysetPagesOptions<R>): KeysetReadable {
  let last = after
  let done = false
  let failure: Error | undefined
  // Keys of the rows pushed lately: the checkpoint is the one before those still in our buffer.
  let recent: unknown[] = []

  const next = async (): Promise<void> => {
    if (done) return
    const rows = await fetchPage(last)
    if (stream.destroyed) return
    const lastRow = rows[rows.length - 1]
    if (lastRow !== undefined) last = keyOf(lastRow)
    recent = recent.concat(rows.map(keyOf))
    if (recent.length > 3 * batchSize) recent = recent.slice(-2 * batchSize)
    done = rows.length < batchSize
    for (const row of rows) stream.push(row)
    if (done) {
      await release()
      stream.push(null)
    }
  }

  const stream = new Readable({
    objectMode: true,
    highWaterMark: batchSize,
    read() {
      next().catch((error: Error) => {
        failure = error
        stream.destroy(toExportError(error, 'ERR_SOURCE', 'source'))
      })
    },
    destroy(error, callback) {
      release(failure).then(
        () => callback(error),
        () => callback(error),
      )
    },
  }) as KeysetReadable

  Object.defineProperties(stream, {
    checkpoint: {
      get: () => {
        const index = recent.length - 1 - stream.readableLength
        return index >= 0 ? recent[index] : after
      },
      enumerable: true,
    },
    keyOf: { value: keyOf },
  })
  return stream
}
