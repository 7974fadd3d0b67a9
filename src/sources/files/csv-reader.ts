// csvSource's reader: the bytes of a CSV file in, rows out (a batch per input chunk once asked),
// named by the header or the given columns, typed as declared or inferred (csv-types.ts). The
// records come from csv-tokenizer.ts, which reads them as csv-parse does in a quarter of its time
// (docs/benchmarks.md, "CSV parsers").
import { StringDecoder } from 'node:string_decoder'
import { Transform } from 'node:stream'
import { ExportError, toExportError } from '../../core/errors.js'
import { rowBatch, type ColumnType, type Row, type SourceExtras, type TextEncoding } from '../../core/types.js'
import { uniqueColumnNames } from '../column-names.js'
import { setHighWaterMark } from '../high-water-mark.js'
import { CsvPassthrough, passesThrough } from './csv-passthrough.js'
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
  #pass: CsvPassthrough | undefined // the rows written as CSV here (encodeFor)

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
   * For a CSV written in this file's own dialect (see `passesThrough`) of its text cells: lines
   * without quotes or CR go out as their bytes, the other records are written here, and nothing
   * goes as rows. Byte for byte what the rows would have been written as (csv-passthrough.ts).
   */
  encodeFor(encoding: TextEncoding, onEncoding?: () => void): void {
    const { delimiter, emptyNull, types } = this.#options
    if (types !== undefined || !passesThrough(encoding, delimiter, emptyNull)) return
    this.#pass = new CsvPassthrough(delimiter, onEncoding)
    this.#tokenizer.passLines = (bytes, from, to) => (this.#names && this.#pass ? this.#pass.lines(bytes, from, to, this.#names.length) : 0)
    if (this.#names) this.#passNames(this.#names)
  }

  /** The types of every column, in the file's order, once known (after the first record; with inferred types, after the sample). */
  columnTypes(): ColumnType[] | undefined {
    // Rows written here: text columns, the header the format writes before them. (Not before: a
    // file of no rows gives no header, as the rows' path gives none.)
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
    if (this.#pass) this.#passNames(names)
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
    if (this.#pass) return this.#pass.record(fields)
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
   * A column named like an array index (`2024`) comes first among a row's keys, and the rows'
   * path writes the columns in that order: such a file is not passed on.
   */
  #passNames(names: string[]): void {
    if (!names.some((name) => /^(0|[1-9]\d{0,9})$/.test(name) && Number(name) < 2 ** 32 - 1)) return
    this.#pass = undefined
    this.#tokenizer.passLines = undefined
  }

  #emit(row: Row): void {
    if (this.#batches) this.#batch.push(row)
    else this.push(row)
  }

  /** The rows of the input chunk (a batch, or the CSV written here) go on. */
  #flushBatch(): void {
    const encoded = this.#pass?.take()
    if (encoded) this.push(encoded)
    if (this.#batch.length === 0) return
    this.push(rowBatch(this.#batch))
    this.#batch = []
  }
}
