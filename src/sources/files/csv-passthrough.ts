// A CSV file written again as CSV in its own dialect (see CsvReader.encodeFor): lines without
// quotes or CR go out as their bytes, the other records written here as csv() writes text cells
// (quoted when they hold a quote, the delimiter, CR or LF). The output is byte for byte what the
// rows' path writes: test/sources/csv-passthrough.test.ts holds the two equal.
import { isUtf8 } from 'node:buffer'
import { encodedRows, type EncodedRows, type TextEncoding } from '../../core/types.js'

const LF = 0x0a

/**
 * Whether a file read with `delimiter` can be written as `encoding` by passing its lines on: the
 * same one-byte delimiter, `"` quotes, LF line ends, no formula escaping, and null (an empty cell
 * with `emptyNull`) written as an empty cell.
 */
export function passesThrough(encoding: TextEncoding, delimiter: string, emptyNull: boolean): boolean {
  if (encoding.kind !== 'csv' || encoding.delimiter !== delimiter || encoding.quote !== '"' || encoding.eol !== '\n') return false
  if (encoding.escapeFormulas || (emptyNull && encoding.nullValue !== '')) return false
  return delimiter.length === 1 && delimiter.charCodeAt(0) < 0x80
}

/** The encoded output of a CSV source, gathered per input chunk. */
export class CsvPassthrough {
  readonly #delimiter: string
  readonly #byte: number
  readonly #special: RegExp
  #onEncoding: (() => void) | undefined
  #parts: Buffer[] = []
  #text = ''
  #rows = 0
  /** Something was handed on: the format writes the header from the source's columns. */
  started = false

  constructor(delimiter: string, onEncoding: (() => void) | undefined) {
    this.#delimiter = delimiter
    this.#byte = delimiter.charCodeAt(0)
    this.#special = new RegExp(`["\\r\\n${delimiter.replace(/[\]\\^-]/g, '\\$&')}]`)
    this.#onEncoding = onEncoding
  }

  /**
   * Clean LF lines (`bytes` from `from` to `to`, the last LF included) taken as they are when each
   * is a record of `width` cells in valid UTF-8: how many records; else 0 (read them as records,
   * which fail as before; invalid bytes become U+FFFD).
   */
  lines(bytes: Buffer, from: number, to: number, width: number): number {
    const delimiter = this.#byte
    let records = 0
    let cells = 1
    let start = from
    for (let i = from; i < to; i++) {
      const byte = bytes[i]
      if (byte === delimiter) cells++
      else if (byte === LF) {
        if (cells !== width || i === start) return 0 // ragged, or an empty line (no record)
        records++
        cells = 1
        start = i + 1
      }
    }
    const lines = bytes.subarray(from, to)
    if (!isUtf8(lines)) return 0
    this.#pushText()
    this.#parts.push(lines)
    this.#rows += records
    return records
  }

  /** A record read field by field (a quoted field, a CR): written as csv() writes text. */
  record(fields: ReadonlyArray<string | null>): void {
    let line = ''
    for (let i = 0; i < fields.length; i++) {
      if (i > 0) line += this.#delimiter
      const field = fields[i] ?? '' // (null: an empty cell with `empty: 'null'`, written as '')
      line += this.#special.test(field) ? `"${field.replaceAll('"', '""')}"` : field
    }
    this.#text += `${line}\n`
    this.#rows++
  }

  /** What was gathered since the last call, as the format takes it. */
  take(): EncodedRows | undefined {
    this.#pushText()
    if (this.#parts.length === 0) return undefined
    const bytes = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts)
    const chunk = encodedRows(this.#rows, bytes)
    this.#parts = []
    this.#rows = 0
    if (!this.started) this.#onEncoding?.()
    this.started = true
    this.#onEncoding = undefined
    return chunk
  }

  #pushText(): void {
    if (this.#text === '') return
    this.#parts.push(Buffer.from(this.#text))
    this.#text = ''
  }
}
