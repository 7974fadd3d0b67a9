import { Transform } from 'node:stream'
import { ExportError, describe } from '../errors.js'

/** A format stage: a Transform from row objects (object mode) to bytes. */
export interface Formatter extends Transform {
  /** Rows encoded so far. */
  readonly rows: number
  /** MIME type of the output, e.g. `text/csv`; sinks use it as the default Content-Type. */
  readonly contentType: string
  /** File extension without the dot, e.g. `csv`; used by `exportKey()`. */
  readonly extension: string
}

export type Row = Record<string, unknown>

interface FormatterSpec {
  contentType: string
  extension: string
  /** Encodes a batch of rows; `first` is the index of `rows[0]` in the whole export. */
  encode(rows: Row[], first: number): string
  /** Text written after the last row (or for an export of zero rows). */
  end(rowCount: number): string
}

// Rows are encoded in batches and emitted as ~64 KiB chunks: zlib and file writes are 5-8x slower
// when every row arrives as its own tiny chunk (DESIGN.md, "Known traps").
const BATCH_ROWS = 256
const CHUNK_CHARS = 64 * 1024
// A slow source still gets its rows out within this delay (an HTTP response, a progress count).
const MAX_DELAY_MS = 50

/**
 * Wraps a pure batch encoder in a thin Transform. Memory: at most BATCH_ROWS pending rows plus
 * one ~64 KiB chunk of text, besides the stream buffers.
 */
export function createFormatter(spec: FormatterSpec): Formatter {
  let pending: Row[] = []
  let text = ''
  let rows = 0
  let timer: NodeJS.Timeout | undefined

  const encodePending = () => {
    if (pending.length === 0) return
    const batch = pending
    pending = []
    const first = rows - batch.length
    try {
      text += spec.encode(batch, first)
    } catch (error) {
      if (error instanceof ExportError) throw error
      throw new ExportError('ERR_FORMAT', 'format', `Cannot encode rows ${first}-${first + batch.length - 1}: ${(error as Error).message}`, { cause: error })
    }
  }
  const pushText = () => {
    if (text === '') return
    stream.push(Buffer.from(text, 'utf8'))
    text = ''
  }
  const timedFlush = () => {
    timer = undefined
    try {
      encodePending()
      pushText()
    } catch (error) {
      stream.destroy(error as Error)
    }
  }

  const stream = new Transform({
    writableObjectMode: true,
    transform(row: unknown, _encoding, callback) {
      if (typeof row !== 'object' || row === null) {
        callback(new ExportError('ERR_FORMAT', 'format', `Expected row ${rows} to be an object, got ${describe(row)}`))
        return
      }
      pending.push(row as Row)
      rows++
      try {
        if (pending.length >= BATCH_ROWS) encodePending()
        if (text.length >= CHUNK_CHARS) pushText()
      } catch (error) {
        callback(error as Error)
        return
      }
      timer ??= setTimeout(timedFlush, MAX_DELAY_MS).unref()
      callback()
    },
    flush(callback) {
      clearTimeout(timer)
      try {
        encodePending()
        text += spec.end(rows)
        pushText()
        callback()
      } catch (error) {
        callback(error as Error)
      }
    },
    destroy(error, callback) {
      clearTimeout(timer)
      callback(error)
    },
  }) as Formatter

  Object.defineProperties(stream, {
    rows: { get: () => rows, enumerable: true },
    contentType: { value: spec.contentType, enumerable: true },
    extension: { value: spec.extension, enumerable: true },
  })
  return stream
}
