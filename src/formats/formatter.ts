import { Transform } from 'node:stream'
import { ExportError, describe } from '../errors.js'
import type { ColumnType, Formatter, Row, RowEncoder } from '../types.js'

interface FormatterSpec extends RowEncoder {
  contentType: string
  extension: string
  useSourceColumns?(columns: () => ColumnType[] | undefined): void
}

// Encoded rows are emitted as ~64 KiB chunks: zlib and file writes are 5-8x slower when every row
// arrives as its own tiny chunk (DESIGN.md, "Known traps").
const CHUNK_CHARS = 64 * 1024
// A slow source still gets its rows out within this delay (an HTTP response, a progress count).
const MAX_DELAY_MS = 50

function formatError(error: unknown, index: number): ExportError {
  const message = `Cannot encode row ${index}: ${(error as Error).message}`
  return new ExportError('ERR_FORMAT', 'format', message, { cause: error instanceof ExportError ? (error.cause ?? error) : error })
}

/**
 * Wraps a pure row encoder in a thin Transform. Memory: one ~64 KiB chunk of text besides the
 * stream buffers.
 */
export function createFormatter(spec: FormatterSpec): Formatter {
  let text = ''
  let rows = 0
  let timer: NodeJS.Timeout | undefined

  const pushText = () => {
    if (text === '') return
    stream.push(Buffer.from(text, 'utf8'))
    text = ''
  }
  const timedFlush = () => {
    timer = undefined
    pushText()
  }

  const stream = new Transform({
    writableObjectMode: true,
    transform(row: unknown, _encoding, callback) {
      if (typeof row !== 'object' || row === null) {
        callback(new ExportError('ERR_FORMAT', 'format', `Expected row ${rows} to be an object, got ${describe(row)}`))
        return
      }
      try {
        text += spec.encode(row as Row, rows)
      } catch (error) {
        callback(formatError(error, rows))
        return
      }
      rows++
      if (text.length >= CHUNK_CHARS) pushText()
      else timer ??= setTimeout(timedFlush, MAX_DELAY_MS).unref()
      callback()
    },
    flush(callback) {
      clearTimeout(timer)
      text += spec.end(rows)
      pushText()
      callback()
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
    encoder: { value: { encode: spec.encode, end: spec.end } },
  })
  if (spec.useSourceColumns) Object.defineProperty(stream, 'useSourceColumns', { value: spec.useSourceColumns })
  return stream
}
