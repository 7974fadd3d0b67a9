// The XLSX format stage: rows in, an Excel workbook out, in constant memory. Each sheet is one
// streamed ZIP entry of SpreadsheetML written as the rows come (inline strings, no shared-strings
// table that would grow with the data); the small parts that describe the workbook follow at the
// end, once the sheets are known (parts.ts). docs/xlsx.md has the value rules and the measurements.
import { Transform } from 'node:stream'
import { ExportError, describe } from '../../core/errors.js'
import type { Column } from '../columns.js'
import { bsonValue, encodeBinary, isoDate, jsonValue } from '../values.js'
import { isSheetStart, type ColumnType, type Formatter, type Row, type SheetStart } from '../../core/types.js'
import { columnLetters, DECIMAL, exactNumberText, excelHoldsNumber, inline, kindOf, pgSerial, serialOf, type ColumnKind } from './cells.js'
import { XLSX_MAX_CELL_CHARS, XLSX_MAX_COLUMNS, type NormalizedXlsxOptions } from './options.js'
import {
  contentTypes,
  MAIN_NS,
  PACKAGE_RELS,
  REL_NS,
  STYLE_DATE,
  STYLE_DATETIME,
  STYLE_HEADER,
  stylesXml,
  workbookRels,
  workbookXml,
  XML_HEAD,
  type SheetPart,
} from './parts.js'
import { ZipWriter } from './zip.js'

/** Characters a column shows for its widest values: a guess good enough for `<cols>`. */
const MAX_WIDTH = 60

/** Columns learned by the first part of a split export, shared by the next parts so that every file agrees. */
interface Shared {
  columns?: ReadonlyArray<Readonly<Required<Column>>>
  widths?: number[]
}

/** The sheet being written, with its continuations at the row limit: one of a workbook's `sheets`, or the only one. */
interface SheetGroup {
  name: string
  columns: SheetStart['columns'] | undefined
  columnTypes: () => ColumnType[] | undefined
  /** Names taken by the workbook's other sheets, lower-cased (Excel compares them so). */
  reserved: Set<string>
  /** The sheets it fills (its continuations after the first). */
  sheets: string[]
  rows: number
}

/** What a workbook's sheet held: its name, its rows, and the sheets they fill (continued at the row limit). */
export interface SheetSummary {
  name: string
  rows: number
  sheets: string[]
}

const WIDTH_ROWS = 100 // rows read before the first sheet starts, for the column widths
const CHUNK_CHARS = 64 * 1024

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
  #group: SheetGroup
  #groups: SheetGroup[] = [] // a workbook's sheets (SheetStart), once the first one starts
  #open = false // the group's first sheet has started
  #rows = 0
  #waiting: Row[] = [] // the first rows, until the widths are known
  #readers: Array<(row: Row) => unknown> = []
  #kinds: ColumnKind[] = []
  #refs: string[] = [] // column letters
  #known = new Set<string>() // keys the columns read
  #checkExtra = false // columns inferred: a new key in a later row is an error
  #sheets: SheetPart[] = []
  #sheetRows = 0 // data rows in the open sheet
  #text = ''
  #added = 0 // rows written on sheets (the index in errors)

  constructor(options: NormalizedXlsxOptions, internals: XlsxInternals = {}, shared: Shared = {}) {
    super({ writableObjectMode: true })
    this.#options = options
    this.#internals = internals
    this.#shared = shared
    this.#group = { name: options.sheetName, columns: options.columns, columnTypes: () => this.#sourceColumns(), reserved: new Set(), sheets: [], rows: 0 }
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

  /** A workbook's sheets (`exportWorkbook`): each one's rows and the sheets they fill. Empty for a plain export. */
  get sheetSummaries(): SheetSummary[] {
    return this.#groups.map(({ name, rows, sheets }) => ({ name, rows, sheets: [...sheets] }))
  }

  /** A new workbook with the same options, for the next file of a split export: the same columns and widths. */
  nextPart(): XlsxFormat {
    return new XlsxFormat(this.#options, this.#internals, this.#shared)
  }

  override _transform(row: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (isSheetStart(row)) {
      this.#startGroup(row).then(() => callback(), callback)
      return
    }
    if (typeof row !== 'object' || row === null) {
      callback(new ExportError('ERR_FORMAT', 'format', `Expected row ${this.#rows} to be an object, got ${describe(row)}`))
      return
    }
    this.#rows++
    this.#group.rows++
    if (!this.#open) {
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

  /** The next of a workbook's sheets: the open one ended, and the rows after the marker on a new one with its own columns. */
  async #startGroup(start: SheetStart): Promise<void> {
    if (this.#groups.length > 0 || this.#rows > 0) await this.#endGroup()
    const reserved = new Set(start.reserved.map((name) => name.toLowerCase()))
    this.#group = { name: start.name, columns: start.columns, columnTypes: start.columnTypes, reserved, sheets: [], rows: 0 }
    this.#groups.push(this.#group)
    this.#shared = {} // each sheet its own columns and widths
    this.#added = 0
  }

  /** The group's last sheet ended (and started first, for one of fewer rows than the widths wait for, or none). */
  async #endGroup(): Promise<void> {
    if (!this.#open) await this.#start()
    await this.#closeSheet()
    this.#open = false
  }

  /** The group's first sheet started, with the rows that waited for it. */
  async #start(): Promise<void> {
    this.#open = true
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
    const source = this.#group.columnTypes()
    const columns = (this.#shared.columns ??=
      this.#group.columns ?? (first ? Object.keys(first).map((key) => ({ key, header: key })) : (source?.map((c) => ({ key: c.name, header: c.name })) ?? [])))
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
    this.#checkExtra = this.#options.extraColumns === 'error' && this.#group.columns === undefined
    this.#shared.widths ??= columns.map((c, i) =>
      Math.min(MAX_WIDTH, Math.max(this.#options.header ? c.header.length : 0, ...this.#waiting.map((row) => this.#shownChars(row[c.key], i))) + 2),
    )
    this.#openSheet()
  }

  /** Starts the next sheet: its view (the header frozen), column widths, and the header row. */
  #openSheet(): void {
    const n = this.#sheets.length + 1
    const name = this.#nextName()
    this.#group.sheets.push(name)
    this.#sheets.push({ name })
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

  /** The group's next sheet name: its own, then `Name (2)`, `Name (3)`... that no other sheet has or was given. */
  #nextName(): string {
    const { name: base, sheets, reserved } = this.#group
    if (sheets.length === 0) return base
    const taken = (name: string) => reserved.has(name.toLowerCase()) || this.#sheets.some((sheet) => sheet.name.toLowerCase() === name.toLowerCase())
    for (let n = sheets.length + 1; ; n++) {
      const suffix = ` (${n})`
      const name = base.slice(0, 31 - suffix.length).replace(/[\uD800-\uDBFF]$/, '') + suffix // (not half a character)
      if (!taken(name)) return name
    }
  }

  /** Ends the open sheet: the autofilter over the header and its rows. */
  async #closeSheet(): Promise<void> {
    const columns = this.#shared.columns!
    let text = '</sheetData>'
    if (this.#options.header && columns.length > 0) {
      text += `<autoFilter ref="A1:${this.#refs.at(-1)}${this.#sheetRows + 1}"/>`
      this.#sheets.at(-1)!.filter = { lastColumn: this.#refs.at(-1)!, rows: this.#sheetRows }
    }
    this.#text += `${text}</worksheet>`
    if (!this.#writeText()) await this.#zip.drain()
    await this.#zip.endEntry()
  }

  #addRow(row: Row): void {
    if (this.#checkExtra) {
      for (const key in row) {
        if (Object.hasOwn(row, key) && !this.#known.has(key)) {
          throw new ExportError('ERR_FORMAT', 'format', `${this.#rowName()}: a column the sheet does not have: ${JSON.stringify(key)}`)
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
          const text = Object.is(value, -0) ? '-0' : String(value)
          // Past 15 significant digits Excel would cut the number: exact text unless asked.
          if (this.#options.bigNumbers === 'text' && !excelHoldsNumber(text)) return this.#textCell(ref, text, column)
          return `<c r="${ref}"><v>${text}</v></c>`
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
    return new ExportError('ERR_FORMAT', 'format', `${this.#rowName()}, column ${JSON.stringify(key)}: cannot write ${what}`)
  }

  /** The row being written, for errors: `Row 12`, or in a workbook `Sheet "Detail", row 12`. */
  #rowName(): string {
    return this.#groups.length > 0 ? `Sheet ${JSON.stringify(this.#group.name)}, row ${this.#added}` : `Row ${this.#added}`
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
    await this.#endGroup()
    const zip = this.#zip
    const names = this.#sheets.map((sheet) => sheet.name)
    zip.addFile('xl/workbook.xml', workbookXml(this.#sheets))
    zip.addFile('xl/_rels/workbook.xml.rels', workbookRels(names))
    zip.addFile('xl/styles.xml', stylesXml(this.#options.dateTimeFormat, this.#options.dateFormat))
    zip.addFile('_rels/.rels', PACKAGE_RELS)
    zip.addFile('[Content_Types].xml', contentTypes(names))
    zip.finish()
  }
}
