// csvSource's reader: the bytes of a CSV file in, rows out (a batch per input chunk once asked),
// named by the header or the given columns, typed as declared or inferred (csv-types.ts). The
// records come from csv-tokenizer.ts, which reads them as csv-parse does in a quarter of its time
// (docs/benchmarks.md, "CSV parsers").
import { isUtf8 } from 'node:buffer'
import { StringDecoder } from 'node:string_decoder'
import { Transform } from 'node:stream'
import { ExportError, toExportError } from '../../core/errors.js'
import { encodedRows, rowBatch, type ColumnType, type Row, type SourceExtras, type TextEncoding } from '../../core/types.js'
import { uniqueColumnNames } from '../column-names.js'
import { setHighWaterMark } from '../high-water-mark.js'
import { CsvTokenizer, UTF16LE_BOM, UTF8_BOM } from './csv-tokenizer.js'
import { columnTypeOf, inferredValue, inferType, typedValue, type CsvColumnType } from './csv-types.js'

export interface CsvReaderOptions {
  /** `true`: the first record names the columns (repeats made unique); or the names. */
  columns: true | string[]
  delimiter: string
  /** Skip a byte order mark (UTF-8; UTF-16LE decodes the file as UTF-16LE). */
  bom: boolean
  /** An unquoted empty cell is null. */
  emptyNull: boolean
  types: Record<string, CsvColumnType> | 'infer' | undefined
  /** Records sampled by `types: 'infer'`. */
  inferRows: number
}

/** A CSV source's error as an ExportError (ERR_SOURCE; a syntax error names its line). */
export function csvSourceError(error: Error & { code?: string; lines?: number }): ExportError {
  if (error instanceof ExportError) return error
  if (error.code?.startsWith('CSV_')) {
    return new ExportError('ERR_SOURCE', 'source', `Invalid CSV at line ${error.lines}: ${error.message}`, { cause: error })
  }
  return toExportError(error, 'ERR_SOURCE', 'source')
}

/** Rows of CSV bytes (see csvSource). */
export class CsvReader extends Transform implements SourceExtras {
  readonly #options: CsvReaderOptions
  readonly #tokenizer: CsvTokenizer
  #started = false // the first bytes seen (a BOM skipped)
  #utf16: StringDecoder | undefined // a UTF-16LE file (its BOM): decoded, and read as UTF-8
  #head = Buffer.alloc(0) // the first bytes, until there are enough to tell a BOM
  #names: string[] | undefined
  #proto = -1 // the column named __proto__ (set as an own property)
  #types: CsvColumnType[] | undefined // by column, once known
  #checked = false // declared types: checked against the header at the first record
  #held: Array<{ fields: Array<string | null>; line: number }> = [] // inferred types: the sample
  #batches = false
  #batch: Row[] = []
  #pass: { delimiter: number; onEncoding: (() => void) | undefined; started: boolean } | undefined // lines passed on as they are (encodeFor)
  #passed: { bytes: Buffer; rows: number } | undefined // lines passed on, not yet pushed
  #indexNames = false // a column named like an array index: rows' keys come in another order

  constructor(options: CsvReaderOptions) {
    super({ readableObjectMode: true })
    this.#options = options
    this.#tokenizer = new CsvTokenizer(options.delimiter, options.emptyNull)
    if (Array.isArray(options.columns)) this.#useNames(options.columns)
  }

  /** Rows go in batches (a batch per input chunk). */
  sendBatches(): void {
    this.#batches = true
    setHighWaterMark(this, 1)
  }

  /**
   * For a CSV written as this file is read (the same one-byte delimiter, `"` quotes, LF line ends,
   * no formula escaping, null written as an empty cell, text cells): lines without quotes or CR go
   * out as their bytes, and only the others as rows. The output is byte for byte what the rows
   * would have been written as: such a line's cells are written unquoted, as they are
   * (test/sources/csv-passthrough.test.ts holds the two paths equal).
   */
  encodeFor(encoding: TextEncoding, onEncoding?: () => void): void {
    const { delimiter, emptyNull, types } = this.#options
    if (encoding.kind !== 'csv' || types !== undefined || encoding.delimiter !== delimiter || encoding.quote !== '"' || encoding.eol !== '\n') return
    if (encoding.escapeFormulas || (emptyNull && encoding.nullValue !== '') || delimiter.length !== 1 || delimiter.charCodeAt(0) > 0x7f) return
    this.#pass = { delimiter: delimiter.charCodeAt(0), onEncoding, started: false }
    this.#tokenizer.passLines = this.#passLines
  }

  /** The types of every column, in the file's order, once known (after the first record; with inferred types, after the sample). */
  columnTypes(): ColumnType[] | undefined {
    // Lines passed on: text columns, the header the format writes before them. (Not before: a file
    // of no rows gives no header, as the rows' path gives none.)
    if (this.#pass?.started && this.#names) return this.#names.map((name) => columnTypeOf(name, 'text'))
    const types = this.#types
    if (!types || !this.#names || (this.#options.types !== 'infer' && !this.#checked)) return undefined
    return this.#names.map((name, i) => columnTypeOf(name, types[i]!))
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      let bytes = chunk
      if (!this.#started) {
        this.#head = Buffer.concat([this.#head, chunk])
        if (this.#head.length < 3) return callback()
        bytes = this.#start(this.#head)
      }
      this.#tokenizer.push(this.#utf8(bytes), this.#onRecord)
      this.#flushBatch()
      callback()
    } catch (error) {
      callback(csvSourceError(error as Error))
    }
  }

  override _flush(callback: (error?: Error | null) => void): void {
    try {
      // (Fewer than 3 bytes in all: no BOM to tell.)
      if (!this.#started) this.#tokenizer.push(this.#utf8(this.#start(this.#head)), this.#onRecord)
      if (this.#utf16) this.#tokenizer.push(Buffer.from(this.#utf16.end(), 'utf8'), this.#onRecord)
      this.#tokenizer.end(this.#onRecord)
      if (this.#options.types === 'infer' && this.#types === undefined) this.#release()
      this.#flushBatch()
      callback()
    } catch (error) {
      callback(csvSourceError(error as Error))
    }
  }

  /** The first bytes, a BOM skipped (a UTF-16LE one: the file is decoded as UTF-16LE). */
  #start(head: Buffer): Buffer {
    this.#started = true
    this.#head = Buffer.alloc(0)
    if (this.#options.bom && head.subarray(0, 3).equals(UTF8_BOM)) return head.subarray(3)
    if (this.#options.bom && head.subarray(0, 2).equals(UTF16LE_BOM)) {
      this.#utf16 = new StringDecoder('utf16le')
      return head.subarray(2)
    }
    return head
  }

  /** The bytes as UTF-8 (a UTF-16LE file's re-encoded). */
  #utf8(bytes: Buffer): Buffer {
    return this.#utf16 ? Buffer.from(this.#utf16.write(bytes), 'utf8') : bytes
  }

  #useNames(names: string[]): void {
    this.#names = names
    this.#indexNames = names.some((name) => /^(0|[1-9]\d{0,9})$/.test(name) && Number(name) < 2 ** 32 - 1)
    this.#proto = names.indexOf('__proto__')
    this.#tokenizer.column = (index) => (index < names.length ? names[index]! : null)
  }

  readonly #onRecord = (fields: Array<string | null>, line: number): void => {
    const names = this.#names
    if (names === undefined) {
      // The header: names, never values (an empty one stays '', with emptyNull too).
      this.#useNames(uniqueColumnNames(fields.map((field) => field ?? '')))
      return
    }
    if (fields.length !== names.length) {
      throw Object.assign(new Error(`Invalid Record Length: columns length is ${names.length}, got ${fields.length} on line ${line}`), {
        code: 'CSV_RECORD_INCONSISTENT_COLUMNS',
        lines: line,
      })
    }
    const { types } = this.#options
    if (types === undefined) return this.#emit(this.#row(fields))
    if (types !== 'infer' && !this.#checked) this.#check(types)
    if (this.#types === undefined) {
      this.#held.push({ fields, line })
      if (this.#held.length >= this.#options.inferRows) this.#release()
      return
    }
    this.#emit(this.#typed(fields, line))
  }

  /** Declared types against the header: every name a column, the others text. */
  #check(types: Record<string, CsvColumnType>): void {
    this.#checked = true
    const names = this.#names!
    const missing = Object.keys(types).filter((name) => !names.includes(name))
    if (missing.length > 0) {
      throw new ExportError(
        'ERR_INVALID_OPTION',
        'options',
        `\`types\` names ${missing.map((m) => JSON.stringify(m)).join(', ')}, not a column of the CSV (its columns: ${names.map((m) => JSON.stringify(m)).join(', ')})`,
      )
    }
    this.#types = names.map((name) => (Object.hasOwn(types, name) ? types[name]! : 'text'))
  }

  /** The sample's types inferred; the held records sent on. */
  #release(): void {
    const held = this.#held
    this.#held = []
    this.#types ??= (this.#names ?? []).map((_, i) => inferType(held.map((record) => record.fields[i])))
    for (const { fields, line } of held) this.#emit(this.#typed(fields, line))
  }

  #typed(fields: Array<string | null>, line: number): Row {
    const names = this.#names!
    const types = this.#types!
    const declared = this.#options.types !== 'infer'
    return this.#row(fields.map((cell, i) => (declared ? typedValue(types[i]!, cell, { line, column: names[i]! }) : inferredValue(types[i]!, cell))))
  }

  #row(fields: readonly unknown[]): Row {
    const names = this.#names!
    const proto = this.#proto
    const row: Row = {}
    for (let i = 0; i < names.length; i++) {
      // (An assignment to __proto__ would set the prototype instead.)
      if (i === proto) Object.defineProperty(row, '__proto__', { value: fields[i], enumerable: true, writable: true, configurable: true })
      else row[names[i]!] = fields[i]
    }
    return row
  }

  /**
   * A block of clean LF lines (see encodeFor) taken as they are when every line is a record of
   * the header's width in valid UTF-8; else 0, and they are read as records (which fail as before).
   */
  readonly #passLines = (bytes: Buffer, from: number, to: number): number => {
    const names = this.#names
    if (!this.#pass || names === undefined || this.#indexNames) return 0
    const delimiter = this.#pass.delimiter
    const width = names.length - 1
    let records = 0
    let cells = 0
    let start = from
    for (let i = from; i < to; i++) {
      const byte = bytes[i]
      if (byte === delimiter) cells++
      else if (byte === 0x0a) {
        if (cells !== width || i === start) return 0 // ragged, or an empty line (skipped as a record)
        records++
        cells = 0
        start = i + 1
      }
    }
    const lines = bytes.subarray(from, to)
    if (!isUtf8(lines)) return 0 // (read as records, invalid bytes become U+FFFD)
    if (!this.#pass.started) this.#pass.onEncoding?.()
    this.#pass.started = true
    this.#flushRows()
    const passed = this.#passed
    // Lines that follow the last ones in the same chunk are joined to them (one push per chunk).
    if (passed && passed.bytes.buffer === lines.buffer && passed.bytes.byteOffset + passed.bytes.length === lines.byteOffset)
      this.#passed = { bytes: Buffer.from(lines.buffer, passed.bytes.byteOffset, passed.bytes.length + lines.length), rows: passed.rows + records }
    else {
      this.#flushPassed()
      this.#passed = { bytes: lines, rows: records }
    }
    return records
  }

  #emit(row: Row): void {
    this.#flushPassed()
    if (this.#batches) this.#batch.push(row)
    else this.push(row)
  }

  /** What is waiting goes out: rows, or lines passed on (never both: each flushes the other first). */
  #flushBatch(): void {
    this.#flushRows()
    this.#flushPassed()
  }

  #flushRows(): void {
    if (this.#batch.length === 0) return
    this.push(rowBatch(this.#batch))
    this.#batch = []
  }

  #flushPassed(): void {
    if (!this.#passed) return
    this.push(encodedRows(this.#passed.rows, this.#passed.bytes))
    this.#passed = undefined
  }
}
