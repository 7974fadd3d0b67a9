import { Transform } from 'node:stream'
import { ExportError, describe } from '../core/errors.js'
import { isEncodedRows, isRowBatch, WAITING_CHUNKS, type ColumnType, type Formatter, type Row, type RowEncoder, type TextEncoding } from '../core/types.js'

/** What a text format is made of: its row encoder and what it tells the pipeline. */
export interface FormatterSpec extends RowEncoder {
  contentType: string
  extension: string
  useSourceColumns?(columns: () => ColumnType[] | undefined): void
  /** The encoding a source may write itself (see `SourceExtras.encodeFor`), with `begin` for what comes first. */
  textEncoding?: TextEncoding
  /** The text before rows a source encoded (a CSV header from the source's columns, a BOM). */
  begin?(): string
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
 * A text format stage: a pure row encoder in a thin Transform. Memory: one ~64 KiB chunk of text
 * besides the stream buffers.
 */
export class TextFormat extends Transform implements Formatter {
  readonly contentType: string
  readonly extension: string
  readonly encoder: RowEncoder
  /** Write the end of the output (a JSON array's `]`, a header without rows) when the stream ends. */
  writesEnd = true
  readonly takesBatches = true
  #spec: FormatterSpec
  #text = ''
  #textBytes = 0
  #rows = 0
  #begun = false
  #timer: NodeJS.Timeout | undefined

  constructor(spec: FormatterSpec) {
    super({ writableObjectMode: true, writableHighWaterMark: WAITING_CHUNKS })
    this.#spec = spec
    this.contentType = spec.contentType
    this.extension = spec.extension
    this.encoder = { encode: spec.encode, end: spec.end }
  }

  /** Rows encoded so far. */
  get rows(): number {
    return this.#rows
  }

  /** UTF-8 bytes of the encoded rows not yet handed on (under one ~64 KiB chunk). */
  get pendingBytes(): number {
    return this.#textBytes
  }

  useSourceColumns(columns: () => ColumnType[] | undefined): void {
    this.#spec.useSourceColumns?.(columns)
  }

  get textEncoding(): TextEncoding | undefined {
    return this.#spec.textEncoding
  }

  /** The same format for the next file of a split export: one encoder, so the columns agree. */
  nextPart(): TextFormat {
    return new TextFormat(this.#spec)
  }

  /** The output continued in the next segment of one object, from `startRow` (see FormatInfo). */
  nextSegment(startRow = this.#rows): TextFormat {
    const next = new TextFormat(this.#spec)
    next.#rows = startRow
    next.writesEnd = false
    return next
  }

  override _transform(row: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (isEncodedRows(row)) {
      // Rows the source wrote as this format would have (COPY): passed on as they are.
      try {
        if (!this.#begun) this.#text += this.#spec.begin?.() ?? ''
      } catch (error) {
        callback(error as Error)
        return
      }
      this.#begun = true
      this.#pushText()
      this.push(row.bytes)
      this.#rows += row.encodedRows
      callback()
      return
    }
    try {
      if (isRowBatch(row)) for (const each of row.rows) this.#encode(each)
      else this.#encode(row)
    } catch (error) {
      callback(error as Error)
      return
    }
    if (this.#text !== '') this.#timer ??= setTimeout(() => this.#timedFlush(), MAX_DELAY_MS).unref()
    callback()
  }

  /** Encodes one row into the pending text, handing the text on once it fills a chunk. */
  #encode(row: unknown): void {
    const text = this.#encodeOne(row)
    this.#text += text
    this.#textBytes += Buffer.byteLength(text)
    if (this.#text.length >= CHUNK_CHARS) this.#pushText()
  }

  #encodeOne(row: unknown): string {
    if (typeof row !== 'object' || row === null)
      throw new ExportError('ERR_FORMAT', 'format', `Expected row ${this.#rows} to be an object, got ${describe(row)}`)
    let text: string
    try {
      text = this.#spec.encode(row as Row, this.#rows)
    } catch (error) {
      throw formatError(error, this.#rows)
    }
    this.#rows++
    this.#begun = true // (the first row's text began the output: bytes a source encodes after it follow it)
    return text
  }

  /**
   * Encodes rows ahead of the stream, without handing the text on (a small part is written whole,
   * without its stages: see src/parts/held-part.ts); they count as this format's rows.
   */
  encodeHeld(rows: readonly unknown[]): string {
    let text = ''
    for (const row of rows) text += this.#encodeOne(row)
    return text
  }

  /** The bytes of text from `encodeHeld` go out first, before any row written (the part grew: it gets its stages). */
  unhold(bytes: Buffer): void {
    this.push(bytes)
  }

  /** The text that ends the output (a JSON array's `]`, a header without rows), for a part written whole. */
  endText(): string {
    return this.writesEnd ? this.#spec.end(this.#rows) : ''
  }

  override _flush(callback: (error?: Error | null) => void): void {
    clearTimeout(this.#timer)
    if (this.writesEnd) this.#text += this.#spec.end(this.#rows)
    this.#pushText()
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#timer)
    callback(error)
  }

  #pushText(): void {
    if (this.#text === '') return
    this.push(Buffer.from(this.#text, 'utf8'))
    this.#text = ''
    this.#textBytes = 0
  }

  #timedFlush(): void {
    this.#timer = undefined
    this.#pushText()
  }
}

/** A format stage from a pure row encoder (csv, jsonl, jsonArray). */
export function createFormatter(spec: FormatterSpec): Formatter {
  return new TextFormat(spec)
}
