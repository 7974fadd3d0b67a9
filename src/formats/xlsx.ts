// XLSX format stage: rows in, an Excel workbook out, in constant memory. Each sheet is one
// streamed ZIP entry of SpreadsheetML written as the rows come (inline strings, no shared-strings
// table that would grow with the data); the small parts that describe the workbook follow at the
// end, once the sheets are known. docs/xlsx.md has the value rules and the measurements.
import { availableParallelism } from 'node:os'
import { Transform } from 'node:stream'
import { ExportError, describe, invalidOption } from '../errors.js'
import { checkBoolean, checkObject, checkOneOf, checkPositiveInteger, checkString } from '../options.js'
import { normalizeColumns, type Column, type ColumnsOption } from './columns.js'
import { bsonValue, encodeBinary, isNumberColumn, isoDate, jsonValue, type BinaryEncoding } from './values.js'
import { ZipWriter } from './zip.js'
import type { ColumnType, Formatter, Row } from '../types.js'

/** Rows in one Excel worksheet, the header row included (Excel's limit). */
export const XLSX_MAX_ROWS = 1_048_576
/** Columns in one Excel worksheet (Excel's limit). */
export const XLSX_MAX_COLUMNS = 16_384
/** Characters in one Excel cell (Excel's limit). */
export const XLSX_MAX_CELL_CHARS = 32_767

export interface XlsxOptions {
  /**
   * Columns in output order. Strings, `{ key, header }` objects (to rename), or a `{ key: header }`
   * map. Default: the first row's keys (or the source's columns, with zero rows).
   */
  columns?: ColumnsOption
  /** Write a header row: bold, frozen, with an autofilter. Default `true`. */
  header?: boolean
  /** Name of the first sheet; further sheets are `Name (2)`, `Name (3)`... Default `Sheet1`. */
  sheetName?: string
  /**
   * Data rows per sheet before the workbook continues on a new sheet, the header repeated.
   * Default and maximum: what Excel's 1,048,576 rows hold (1,048,575 under a header).
   */
  maxRowsPerSheet?: number
  /**
   * Integers beyond 15 significant digits (bigint, int8 and numeric text, Decimal128, numbers
   * past 2^53): `text` (default; exact, as Excel would round the number) or `number` (Excel keeps
   * 15 significant digits).
   */
  bigNumbers?: 'text' | 'number'
  /** A string longer than Excel's 32,767 characters: `error` (default, ERR_FORMAT naming row and column) or `truncate`. */
  longText?: 'error' | 'truncate'
  /**
   * With columns from the first row, a later row's new field: `error` (default, ERR_FORMAT naming
   * it) or `ignore`. Given `columns` choose the keys written: other keys are left out as asked.
   */
  extraColumns?: 'error' | 'ignore'
  /** Number format of date-time cells (Date values, timestamps). Default `yyyy-mm-dd hh:mm:ss`. */
  dateTimeFormat?: string
  /** Number format of date cells (Postgres `date`). Default `yyyy-mm-dd`. */
  dateFormat?: string
  /** Encoding of Buffer / Uint8Array cells. Default `base64`. */
  binary?: BinaryEncoding
  /** Deflate level of the workbook's ZIP, 0-9. Default 6. */
  compressionLevel?: number
  /**
   * Blocks of a sheet deflated at once on libuv's thread pool (as the gzip stage does). Default:
   * `os.availableParallelism()`. Memory: up to threads x 2 blocks of 256 KiB in flight.
   */
  threads?: number
}

/** XLSX options with every default applied and every value checked: what `xlsx()` writes with. */
export type NormalizedXlsxOptions = Readonly<Required<Omit<XlsxOptions, 'columns'>> & { columns: readonly Readonly<Required<Column>>[] | undefined }>

/**
 * Checks a sheet name against Excel's rules: 1-31 characters, none of `: \ / ? * [ ]`, not
 * starting or ending with `'`, not `History`.
 */
function checkSheetName(name: unknown): asserts name is string {
  const expected = "a sheet name of 1-31 characters without : \\ / ? * [ ], not starting or ending with ' (Excel's rules)"
  if (typeof name !== 'string' || name.length === 0 || name.length > 31 || /[:\\/?*[\]]/.test(name) || /^'|'$/.test(name) || name.toLowerCase() === 'history') {
    invalidOption('sheetName', expected, name)
  }
}

/**
 * Checks XLSX options and applies the defaults, without building a stream: ERR_INVALID_OPTION
 * names the first bad option. The result is frozen.
 */
export function normalizeXlsxOptions(options: XlsxOptions = {}): NormalizedXlsxOptions {
  checkObject('options', options)
  const {
    header = true,
    sheetName = 'Sheet1',
    bigNumbers = 'text',
    longText = 'error',
    extraColumns = 'error',
    dateTimeFormat = 'yyyy-mm-dd hh:mm:ss',
    dateFormat = 'yyyy-mm-dd',
    binary = 'base64',
    compressionLevel = 6,
    threads = availableParallelism(),
  } = options
  checkBoolean('header', header)
  checkSheetName(sheetName)
  const limit = XLSX_MAX_ROWS - (header ? 1 : 0)
  const maxRowsPerSheet = options.maxRowsPerSheet ?? limit
  if (!Number.isSafeInteger(maxRowsPerSheet) || maxRowsPerSheet < 1 || maxRowsPerSheet > limit) {
    invalidOption('maxRowsPerSheet', `an integer from 1 to ${limit.toLocaleString('en')} (Excel's rows${header ? ' under a header' : ''})`, maxRowsPerSheet)
  }
  checkOneOf('bigNumbers', bigNumbers, ['text', 'number'] as const)
  checkOneOf('longText', longText, ['error', 'truncate'] as const)
  checkOneOf('extraColumns', extraColumns, ['error', 'ignore'] as const)
  checkString('dateTimeFormat', dateTimeFormat)
  checkString('dateFormat', dateFormat)
  checkOneOf('binary', binary, ['base64', 'hex'] as const)
  if (!Number.isInteger(compressionLevel) || compressionLevel < 0 || compressionLevel > 9)
    invalidOption('compressionLevel', 'an integer from 0 to 9', compressionLevel)
  checkPositiveInteger('threads', threads)
  const columns = normalizeColumns(options.columns)
  return Object.freeze({
    header,
    sheetName,
    maxRowsPerSheet,
    bigNumbers,
    longText,
    extraColumns,
    dateTimeFormat,
    dateFormat,
    binary,
    compressionLevel,
    threads,
    columns: columns && Object.freeze(columns.map((c) => Object.freeze(c))),
  })
}

// ---- Cell values -------------------------------------------------------------------------------

const XML_SPECIAL = /[&<>]/g
const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' }
// What XML 1.0 cannot hold (controls other than TAB and LF, lone surrogates, U+FFFE/U+FFFF), CR
// (an XML parser turns it into LF), and text that already looks like an escape (`_x0041_`, which
// Excel would decode): written as OOXML's `_xHHHH_` escapes, which Excel reads back as the
// original character. Nothing is dropped.
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const NEEDS_OOXML_ESCAPE = /[\0-\x08\x0B-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|_x[0-9A-Fa-f]{4}_/g
const hex4 = (code: number) => code.toString(16).toUpperCase().padStart(4, '0')
const ooxmlEscape = (match: string) => (match.length === 1 ? `_x${hex4(match.charCodeAt(0))}_` : `_x005F${match}`)

/** Text content for SpreadsheetML: XML-escaped, with OOXML escapes for what XML cannot carry. */
export function xmlText(text: string): string {
  return text.replace(NEEDS_OOXML_ESCAPE, ooxmlEscape).replace(XML_SPECIAL, (c) => XML_ESCAPES[c]!)
}

const attribute = (text: string) => xmlText(text).replace(/"/g, '&quot;')

// The serial number of a date: days since 1899-12-30 (Excel's 1900 date system, whose day 60 is
// the 29 February 1900 that never was: serials are right from 1 March 1900 on).
const EXCEL_EPOCH_MS = Date.UTC(1899, 11, 30)
const FIRST_SERIAL_MS = Date.UTC(1900, 2, 1)
const LAST_SERIAL_MS = Date.UTC(10000, 0, 1)
const DAY_MS = 86_400_000

/** The serial of a UTC instant, or undefined outside what Excel's dates hold (1 March 1900 to 9999). */
function serialOf(ms: number): number | undefined {
  if (ms < FIRST_SERIAL_MS || ms >= LAST_SERIAL_MS) return undefined
  return (ms - EXCEL_EPOCH_MS) / DAY_MS
}

// Postgres timestamps as the sources give them (isoTimestamp): date, time with up to 6 fractional
// digits, and for timestamptz the offset.
const PG_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([+-])(\d{2}):(\d{2})(?::(\d{2}))?)?)?$/

/** The serial of a Postgres date or timestamp text (microseconds kept as far as a double holds them), or undefined. */
function pgSerial(text: string): number | undefined {
  const m = PG_TIMESTAMP.exec(text)
  if (!m || Number(m[1]) < 1900) return undefined // infinity, BC dates, years before Excel's
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', sign, oh = '0', om = '0', os = '0'] = m
  const offsetMs = sign ? (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os)) * 1000 : 0
  const dayMs = Date.UTC(Number(y), Number(mo) - 1, Number(d))
  const timeMs = (Number(h) * 3600 + Number(mi) * 60 + Number(s)) * 1000 - offsetMs
  const at = dayMs + timeMs
  if (serialOf(at) === undefined) return undefined
  return (dayMs - EXCEL_EPOCH_MS) / DAY_MS + (timeMs + (fraction ? Number(fraction) * 1000 : 0)) / DAY_MS
}

// A decimal number in text: sign, digits, fraction, exponent.
const DECIMAL = /^[+-]?(\d+)(?:\.(\d*))?(?:[eE][+-]?\d+)?$/

/** The text of a number Excel holds exactly (at most 15 significant digits), as `<v>` takes it; else undefined. */
function exactNumberText(text: string): string | undefined {
  const m = DECIMAL.exec(text)
  if (!m) return undefined
  const digits = `${m[1]}${m[2] ?? ''}`.replace(/^0+/, '').replace(/0+$/, '')
  if (digits.length > 15) return undefined
  const value = Number(text)
  return Number.isFinite(value) ? text.replace(/^\+/, '') : undefined
}

const STYLE_HEADER = 1
const STYLE_DATETIME = 2
const STYLE_DATE = 3

/** What a column holds by its source type: Postgres timestamps and dates become Excel dates, numbers by type become numbers. */
type ColumnKind = 'plain' | 'number' | 'timestamp' | 'date'
const kindOf = (type: ColumnType | undefined): ColumnKind =>
  type?.type === 'TIMESTAMP' ? 'timestamp' : type?.type === 'DATE' ? 'date' : isNumberColumn(type) ? 'number' : 'plain'

/** Characters a column shows for its widest values: a guess good enough for `<cols>`. */
const MAX_WIDTH = 60

// ---- The workbook ------------------------------------------------------------------------------

/** Columns learned by the first part of a split export, shared by the next parts so that every file agrees. */
interface Shared {
  columns?: ReadonlyArray<Readonly<Required<Column>>>
  widths?: number[]
}

const WIDTH_ROWS = 100 // rows read before the first sheet starts, for the column widths
const CHUNK_CHARS = 64 * 1024
const XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
const MAIN_NS = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'
const REL_NS = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships'
const PACKAGE_REL_NS = 'http://schemas.openxmlformats.org/package/2006/relationships'

/** Internal knobs for tests: ZIP64 records forced, a fixed entry time. */
export interface XlsxInternals {
  forceZip64?: boolean
  date?: Date
}

/**
 * The XLSX format stage (see `xlsx()`): a Transform from row objects to the bytes of one
 * workbook. Memory: the first 100 rows (for the column widths), one ~64 KiB chunk of XML and up
 * to `threads` x 2 blocks of 256 KiB being deflated, whatever the row count.
 */
export class XlsxFormat extends Transform implements Formatter {
  readonly contentType = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'
  readonly extension = 'xlsx'
  /** The output is a ZIP: a gzip stage after it is refused. */
  readonly compressed = true
  #options: NormalizedXlsxOptions
  #internals: XlsxInternals
  #shared: Shared
  #zip: ZipWriter
  #sourceColumns: () => ColumnType[] | undefined = () => undefined
  #rows = 0
  #waiting: Row[] = [] // the first rows, until the widths are known
  #readers: Array<(row: Row) => unknown> = []
  #kinds: ColumnKind[] = []
  #refs: string[] = [] // column letters
  #known = new Set<string>() // keys the columns read
  #checkExtra = false // columns inferred: a new key in a later row is an error
  #sheets: string[] = []
  #sheetRows = 0 // data rows in the open sheet
  #text = ''
  #added = 0 // rows written on sheets (the index in errors)

  constructor(options: NormalizedXlsxOptions, internals: XlsxInternals = {}, shared: Shared = {}) {
    super({ writableObjectMode: true })
    this.#options = options
    this.#internals = internals
    this.#shared = shared
    // (Blocks still compressing when the export is destroyed are not handed on.)
    const out = (chunk: Buffer) => void (this.destroyed || this.push(chunk))
    this.#zip = new ZipWriter(out, { level: options.compressionLevel, threads: options.threads, ...internals })
  }

  /** Rows taken so far. */
  get rows(): number {
    return this.#rows
  }

  /** Estimated bytes of the rows taken but not yet in the output, at the compression ratio so far. */
  get pendingBytes(): number {
    const zip = this.#zip
    const ratio = zip.bytesIn > 1_000_000 ? zip.bytesWritten / zip.bytesIn : 0.15 // statement rows: ~0.12
    const waitingChars = this.#waiting.length * (this.#shared.widths?.reduce((a, b) => a + b + 20, 0) ?? 200)
    return Math.round((this.#text.length + zip.pendingBytes + waitingChars) * ratio)
  }

  useSourceColumns(columns: () => ColumnType[] | undefined): void {
    this.#sourceColumns = columns
  }

  /** A new workbook with the same options, for the next file of a split export: the same columns and widths. */
  nextPart(): XlsxFormat {
    return new XlsxFormat(this.#options, this.#internals, this.#shared)
  }

  override _transform(row: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (typeof row !== 'object' || row === null) {
      callback(new ExportError('ERR_FORMAT', 'format', `Expected row ${this.#rows} to be an object, got ${describe(row)}`))
      return
    }
    this.#rows++
    if (this.#sheets.length === 0) {
      // The first rows wait for the column widths (the next parts of a split export know them).
      this.#waiting.push(row as Row)
      if (this.#waiting.length < WIDTH_ROWS && this.#shared.widths === undefined) return callback()
      this.#start().then(() => callback(), callback)
      return
    }
    if (this.#sheetRows === this.#options.maxRowsPerSheet) {
      this.#put(row as Row).then(() => callback(), callback)
      return
    }
    try {
      this.#addRow(row as Row)
    } catch (error) {
      callback(error as Error)
      return
    }
    if (this.#text.length < CHUNK_CHARS || this.#writeText()) return callback()
    this.#zip.drain().then(() => callback(), callback)
  }

  override _flush(callback: (error?: Error | null) => void): void {
    this.#finish().then(() => callback(), callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#zip.destroy()
    callback(error)
  }

  #writeText(): boolean {
    if (this.#text === '') return true
    const chunk = Buffer.from(this.#text, 'utf8')
    this.#text = ''
    return this.#zip.write(chunk)
  }

  /** The first sheet started, with the rows that waited for it. */
  async #start(): Promise<void> {
    this.#begin()
    const waiting = this.#waiting
    this.#waiting = []
    for (const row of waiting) await this.#put(row)
  }

  /** A row written on the open sheet, or on a new one when this one is full. */
  async #put(row: Row): Promise<void> {
    if (this.#sheetRows === this.#options.maxRowsPerSheet) {
      await this.#closeSheet()
      this.#openSheet()
    }
    this.#addRow(row)
    if (this.#text.length >= CHUNK_CHARS && !this.#writeText()) await this.#zip.drain()
  }

  /** The columns (given, from the first row, or from the source with zero rows), their readers and widths. */
  #begin(): void {
    const first = this.#waiting[0]
    const source = this.#sourceColumns()
    const columns = (this.#shared.columns ??=
      this.#options.columns ??
      (first ? Object.keys(first).map((key) => ({ key, header: key })) : (source?.map((c) => ({ key: c.name, header: c.name })) ?? [])))
    if (columns.length > XLSX_MAX_COLUMNS) {
      throw new ExportError(
        'ERR_FORMAT',
        'format',
        `${columns.length.toLocaleString('en')} columns: an Excel sheet holds ${XLSX_MAX_COLUMNS.toLocaleString('en')} (choose them with \`columns\`)`,
      )
    }
    const types = new Map(source?.map((c) => [c.name, c]))
    this.#kinds = columns.map((c) => kindOf(types.get(c.key)))
    this.#readers = columns.map((c) => (row: Row) => row[c.key])
    this.#refs = columns.map((_, i) => columnLetters(i))
    this.#known = new Set(columns.map((c) => c.key))
    this.#checkExtra = this.#options.extraColumns === 'error' && this.#options.columns === undefined
    this.#shared.widths ??= columns.map((c, i) =>
      Math.min(MAX_WIDTH, Math.max(this.#options.header ? c.header.length : 0, ...this.#waiting.map((row) => this.#shownChars(row[c.key], i))) + 2),
    )
    this.#openSheet()
  }

  /** Starts the next sheet: its view (the header frozen), column widths, and the header row. */
  #openSheet(): void {
    const n = this.#sheets.length + 1
    const base = this.#options.sheetName
    const suffix = n === 1 ? '' : ` (${n})`
    this.#sheets.push(base.slice(0, 31 - suffix.length) + suffix)
    this.#zip.startEntry(`xl/worksheets/sheet${n}.xml`)
    const { header } = this.#options
    const columns = this.#shared.columns!
    const widths = this.#shared.widths!
    let text = `${XML_HEAD}<worksheet xmlns="${MAIN_NS}" xmlns:r="${REL_NS}">`
    text += `<sheetViews><sheetView workbookViewId="0"${n === 1 ? ' tabSelected="1"' : ''}>`
    if (header) text += '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
    text += '</sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>'
    if (columns.length > 0) text += `<cols>${widths.map((w, i) => `<col min="${i + 1}" max="${i + 1}" width="${w}" customWidth="1"/>`).join('')}</cols>`
    text += '<sheetData>'
    if (header && columns.length > 0) {
      text += '<row r="1">'
      columns.forEach((c, i) => (text += `<c r="${this.#refs[i]}1" s="${STYLE_HEADER}" t="inlineStr"><is>${inline(c.header)}</is></c>`))
      text += '</row>'
    }
    this.#text += text
    this.#sheetRows = 0
  }

  /** Ends the open sheet: the autofilter over the header and its rows. */
  async #closeSheet(): Promise<void> {
    const columns = this.#shared.columns!
    let text = '</sheetData>'
    if (this.#options.header && columns.length > 0) text += `<autoFilter ref="A1:${this.#refs.at(-1)}${this.#sheetRows + 1}"/>`
    this.#text += `${text}</worksheet>`
    if (!this.#writeText()) await this.#zip.drain()
    await this.#zip.endEntry()
  }

  #addRow(row: Row): void {
    if (this.#checkExtra) {
      for (const key in row) {
        if (Object.hasOwn(row, key) && !this.#known.has(key)) {
          throw new ExportError('ERR_FORMAT', 'format', `Row ${this.#added}: a column the sheet does not have: ${JSON.stringify(key)}`)
        }
      }
    }
    const r = this.#sheetRows + (this.#options.header ? 2 : 1)
    let text = `<row r="${r}">`
    for (let i = 0; i < this.#readers.length; i++) {
      const value = this.#readers[i]!(row)
      if (value === null || value === undefined) continue
      text += this.#cell(value, i, `${this.#refs[i]}${r}`)
    }
    this.#text += `${text}</row>`
    this.#sheetRows++
    this.#added++
  }

  /** One `<c>` element under the value policy (docs/xlsx.md). */
  #cell(value: unknown, column: number, ref: string): string {
    if (value === null || value === undefined) return '' // an empty cell (a toJSON that gave null)
    switch (typeof value) {
      case 'number':
        if (Number.isFinite(value)) {
          // Past 2^53 the digits Excel keeps (15) would round the integer: exact text unless asked.
          if (Number.isInteger(value) && !Number.isSafeInteger(value) && this.#options.bigNumbers === 'text') return this.#textCell(ref, String(value), column)
          return `<c r="${ref}"><v>${Object.is(value, -0) ? '-0' : value}</v></c>`
        }
        return this.#textCell(ref, String(value), column) // NaN, Infinity: as the JSON formats write them
      case 'bigint':
        return this.#numberText(ref, value.toString(), column)
      case 'boolean':
        return `<c r="${ref}" t="b"><v>${value ? 1 : 0}</v></c>`
      case 'string':
        return this.#stringCell(ref, value, column)
      case 'object':
        break
      default: // a symbol or a function: its text, as the CSV format writes it
        return this.#textCell(ref, (value as symbol).toString(), column)
    }
    if (value instanceof Date) {
      const ms = value.getTime()
      if (Number.isNaN(ms)) throw this.#error(column, 'an invalid Date')
      const serial = serialOf(ms)
      return serial === undefined ? this.#textCell(ref, isoDate(value), column) : `<c r="${ref}" s="${STYLE_DATETIME}"><v>${serial}</v></c>`
    }
    if (value instanceof Uint8Array) return this.#textCell(ref, encodeBinary(value, this.#options.binary), column)
    if ('_bsontype' in value) {
      const bson = bsonValue(value, this.#options.binary)
      if (typeof bson === 'number') return this.#cell(bson, column, ref)
      const type = (value as { _bsontype: string })._bsontype
      if (bson !== undefined) return type === 'Decimal128' || type === 'Long' ? this.#numberText(ref, bson, column) : this.#textCell(ref, bson, column)
    }
    const toJSON = (value as { toJSON?: unknown }).toJSON
    if (typeof toJSON === 'function') return this.#cell(toJSON.call(value, ''), column, ref) // e.g. a Decimal: its text
    return this.#textCell(ref, jsonValue(value, this.#options.binary) ?? '', column)
  }

  /** A string: a date or a number when the source typed its column so (Postgres), else text. */
  #stringCell(ref: string, value: string, column: number): string {
    const kind = this.#kinds[column]
    if (kind === 'timestamp' || kind === 'date') {
      const serial = pgSerial(value)
      if (serial !== undefined) return `<c r="${ref}" s="${kind === 'date' ? STYLE_DATE : STYLE_DATETIME}"><v>${serial}</v></c>`
    } else if (kind === 'number') {
      return this.#numberText(ref, value, column)
    }
    return this.#textCell(ref, value, column)
  }

  /** An exact number in text (bigint, int8, numeric, Decimal128): a number when Excel holds it exactly. */
  #numberText(ref: string, text: string, column: number): string {
    const exact = exactNumberText(text)
    if (exact !== undefined) return `<c r="${ref}"><v>${exact}</v></c>`
    if (this.#options.bigNumbers === 'number' && DECIMAL.test(text) && Number.isFinite(Number(text))) return `<c r="${ref}"><v>${Number(text)}</v></c>`
    return this.#textCell(ref, text, column)
  }

  #textCell(ref: string, text: string, column: number): string {
    if (text.length > XLSX_MAX_CELL_CHARS) {
      if (this.#options.longText === 'error') {
        throw this.#error(
          column,
          `${text.length.toLocaleString('en')} characters, more than Excel's ${XLSX_MAX_CELL_CHARS.toLocaleString('en')} in a cell (longText: 'truncate' cuts it)`,
        )
      }
      text = text.slice(0, XLSX_MAX_CELL_CHARS)
      if (/[\uD800-\uDBFF]$/.test(text)) text = text.slice(0, -1) // not half a character
    }
    return `<c r="${ref}" t="inlineStr"><is>${inline(text)}</is></c>`
  }

  #error(column: number, what: string): ExportError {
    const key = this.#shared.columns![column]!.key
    return new ExportError('ERR_FORMAT', 'format', `Row ${this.#added}, column ${JSON.stringify(key)}: cannot write ${what}`)
  }

  /** Characters a value shows in its cell, for the column widths. */
  #shownChars(value: unknown, column: number): number {
    if (value === null || value === undefined) return 0
    if (value instanceof Date) return 19
    const kind = this.#kinds[column]
    if (typeof value === 'string') return kind === 'timestamp' ? 19 : kind === 'date' ? 10 : Math.max(...value.split('\n').map((line) => line.length))
    if (typeof value === 'number' || typeof value === 'bigint') return String(value).length
    if (typeof value === 'boolean') return 5
    return 20
  }

  async #finish(): Promise<void> {
    if (this.#sheets.length === 0) await this.#start() // fewer rows than the widths wait for, or none
    await this.#closeSheet()
    const zip = this.#zip
    zip.addFile('xl/workbook.xml', this.#workbookXml())
    zip.addFile('xl/_rels/workbook.xml.rels', this.#workbookRels())
    zip.addFile('xl/styles.xml', this.#stylesXml())
    zip.addFile(
      '_rels/.rels',
      `${XML_HEAD}<Relationships xmlns="${PACKAGE_REL_NS}"><Relationship Id="rId1" Type="${REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>`,
    )
    zip.addFile('[Content_Types].xml', this.#contentTypes())
    zip.finish()
  }

  #workbookXml(): string {
    const columns = this.#shared.columns!
    const sheets = this.#sheets.map((name, i) => `<sheet name="${attribute(name)}" sheetId="${i + 1}" r:id="rId${i + 1}"/>`).join('')
    // The autofilters' ranges, as Excel itself names them.
    const filters =
      this.#options.header && columns.length > 0
        ? `<definedNames>${this.#sheets
            .map((name, i) => {
              const rows = i < this.#sheets.length - 1 ? this.#options.maxRowsPerSheet : this.#sheetRows
              return `<definedName name="_xlnm._FilterDatabase" localSheetId="${i}" hidden="1">${xmlText(`'${name.replace(/'/g, "''")}'`)}!$A$1:$${this.#refs.at(-1)}$${rows + 1}</definedName>`
            })
            .join('')}</definedNames>`
        : ''
    return `${XML_HEAD}<workbook xmlns="${MAIN_NS}" xmlns:r="${REL_NS}"><bookViews><workbookView/></bookViews><sheets>${sheets}</sheets>${filters}</workbook>`
  }

  #workbookRels(): string {
    const sheets = this.#sheets.map((_, i) => `<Relationship Id="rId${i + 1}" Type="${REL_NS}/worksheet" Target="worksheets/sheet${i + 1}.xml"/>`).join('')
    const styles = `<Relationship Id="rId${this.#sheets.length + 1}" Type="${REL_NS}/styles" Target="styles.xml"/>`
    return `${XML_HEAD}<Relationships xmlns="${PACKAGE_REL_NS}">${sheets}${styles}</Relationships>`
  }

  #stylesXml(): string {
    const { dateTimeFormat, dateFormat } = this.#options
    return (
      `${XML_HEAD}<styleSheet xmlns="${MAIN_NS}">` +
      `<numFmts count="2"><numFmt numFmtId="164" formatCode="${attribute(dateTimeFormat)}"/><numFmt numFmtId="165" formatCode="${attribute(dateFormat)}"/></numFmts>` +
      '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font><font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>' +
      '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>' +
      '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>' +
      '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>' +
      '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>' +
      '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>' +
      '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>' +
      '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>' +
      '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
    )
  }

  #contentTypes(): string {
    const sheets = this.#sheets
      .map(
        (_, i) =>
          `<Override PartName="/xl/worksheets/sheet${i + 1}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>`,
      )
      .join('')
    return (
      `${XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
      '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>' +
      '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>' +
      `${sheets}<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>`
    )
  }
}

/** `<t>` of an inline string, keeping leading and trailing spaces and line breaks. */
function inline(text: string): string {
  const preserve = /^\s|\s$|\n/.test(text)
  return preserve ? `<t xml:space="preserve">${xmlText(text)}</t>` : `<t>${xmlText(text)}</t>`
}

/** Column letters of a 0-based index: A, B, ..., Z, AA, ... */
export function columnLetters(index: number): string {
  let letters = ''
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) letters = String.fromCharCode(65 + ((n - 1) % 26)) + letters
  return letters
}

/**
 * XLSX format stage: an Excel workbook streamed in constant memory, typed cells under the shared
 * value policy, a bold frozen header with an autofilter, and a new sheet at Excel's row limit.
 * Output is already compressed (a ZIP): no gzip stage after it.
 * @example exportStream({ source, format: xlsx({ sheetName: 'Statements' }), sink: fileSink({ path: 'statements.xlsx' }) })
 */
export function xlsx(options: XlsxOptions = {}): Formatter {
  return new XlsxFormat(normalizeXlsxOptions(options))
}
