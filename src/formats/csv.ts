import { ExportError, invalidOption } from '../core/errors.js'
import { checkBoolean, checkObject, checkOneOf, checkString, optionNames } from '../core/options.js'
import { normalizeColumns, type Column, type ColumnsOption } from './columns.js'
import { createFormatter, type FormatterSpec } from './formatter.js'
import { csvCellEncoder, isNumberColumn, type BinaryEncoding } from './values.js'
import type { ColumnType, Formatter, Row } from '../core/types.js'

/** A column: the row key to read and the header to write. */
export type CsvColumn = Column

export interface CsvOptions {
  /**
   * Columns in output order. Strings, `{ key, header }` objects (to rename), or a
   * `{ key: header }` map. Default: the first row's keys; later rows' extra keys are ignored.
   */
  columns?: ColumnsOption
  /** Write a header line. Default `true`. With zero rows, a header is written only if `columns` is given. */
  header?: boolean
  /** Field delimiter, one or more characters. Default `,`. */
  delimiter?: string
  /** Quote character. Default `"`. */
  quote?: string
  /** Record delimiter: `\n` (default), `\r\n`, or any string. */
  eol?: string
  /** Start the file with a UTF-8 byte order mark (Excel needs it to read UTF-8). Default `false`. */
  bom?: boolean
  /** Text for null/undefined cells. Default `''`; set e.g. `'\\N'` to tell null from an empty string. */
  nullValue?: string
  /** Prefix `'` to string cells starting with = + - @ TAB CR (OWASP CSV injection). Default `false`. */
  escapeFormulas?: boolean
  /** Encoding of Buffer / Uint8Array cells. Default `base64`. */
  binary?: BinaryEncoding
  /** Preset for Excel: `bom: true`, `eol: '\r\n'`, `escapeFormulas: true` (each overridable). Default `false`. */
  excel?: boolean
  /**
   * Nested objects become dot-path columns (`address.city`) instead of JSON text; arrays stay JSON
   * text. With `columns`, their keys are read as paths. Default `false`.
   */
  flatten?: boolean
  /**
   * A row with a column the header does not have (with columns inferred from the first row, a later
   * row's new field): `ignore` (default; the row still lines up with the header) or `error` (ERR_FORMAT).
   */
  extraColumns?: 'ignore' | 'error'
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== 'object' || value === null) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Key paths of a row's leaves: nested plain objects are walked, anything else is a leaf. */
function leafPaths(row: Record<string, unknown>, flatten: boolean, prefix: string[] = []): string[][] {
  if (!flatten) return Object.keys(row).map((key) => [key])
  return Object.keys(row).flatMap((key) => {
    const value = row[key]
    return isPlainObject(value) && Object.keys(value).length > 0 ? leafPaths(value, true, [...prefix, key]) : [[...prefix, key]]
  })
}

/** Column names of leaf paths (`a.b`); two paths that would share a name are an ERR_FORMAT naming it. */
function pathNames(paths: string[][]): string[] {
  const names = paths.map((path) => path.join('.'))
  const clash = names.find((name, i) => names.indexOf(name) !== i)
  if (clash !== undefined) {
    throw new ExportError(
      'ERR_FORMAT',
      'format',
      `Two fields would both be written as column ${JSON.stringify(clash)} (a key with a dot and a nested path): rename one`,
    )
  }
  return names
}

const readPath = (row: Row, path: string[]): unknown => {
  let value: unknown = row
  for (const key of path) value = isPlainObject(value) ? value[key] : undefined
  return value
}

/**
 * Refuses delimiter, quote and record delimiter that overlap: the output could not be parsed back.
 * The quote is one character, not CR or LF, and in neither delimiter; neither delimiter contains
 * the other.
 */
function checkDelimiters(delimiter: string, quote: string, eol: string): void {
  const overlap = (a: string, b: string, why: string) => {
    throw new ExportError('ERR_INVALID_OPTION', 'options', `Expected \`${a}\` and \`${b}\` not to overlap (${why}): the output could not be parsed back`)
  }
  if ([...quote].length !== 1 || quote === '\r' || quote === '\n') invalidOption('quote', 'one character other than CR and LF', quote)
  if (delimiter.includes(quote)) overlap('delimiter', 'quote', `${JSON.stringify(delimiter)} holds the quote ${JSON.stringify(quote)}`)
  if (eol.includes(quote)) overlap('eol', 'quote', `${JSON.stringify(eol)} holds the quote ${JSON.stringify(quote)}`)
  if (eol.includes(delimiter) || delimiter.includes(eol)) overlap('eol', 'delimiter', `${JSON.stringify(eol)} and ${JSON.stringify(delimiter)}`)
}

/** CSV options with every default applied and every value checked: what `csv()` encodes with. */
export type NormalizedCsvOptions = Readonly<Required<Omit<CsvOptions, 'columns' | 'excel'>> & { columns: readonly Readonly<Required<CsvColumn>>[] | undefined }>

const CSV_OPTION_NAMES = optionNames<CsvOptions>({
  columns: true,
  header: true,
  delimiter: true,
  quote: true,
  eol: true,
  bom: true,
  nullValue: true,
  escapeFormulas: true,
  binary: true,
  excel: true,
  flatten: true,
  extraColumns: true,
})

/**
 * Checks CSV options and applies the defaults (the `excel` preset included), without building a
 * stream: ERR_INVALID_OPTION names the first bad option. The result is frozen.
 */
export function normalizeCsvOptions(options: CsvOptions = {}): NormalizedCsvOptions {
  checkObject('options', options, CSV_OPTION_NAMES)
  const excel = options.excel ?? false
  checkBoolean('excel', excel)
  const {
    header = true,
    delimiter = ',',
    quote = '"',
    eol = excel ? '\r\n' : '\n',
    bom = excel,
    nullValue = '',
    escapeFormulas = excel,
    binary = 'base64',
    flatten = false,
    extraColumns = 'ignore',
  } = options
  checkBoolean('header', header)
  checkString('delimiter', delimiter)
  checkString('quote', quote)
  checkString('eol', eol)
  checkBoolean('bom', bom)
  if (typeof nullValue !== 'string') invalidOption('nullValue', 'a string', nullValue)
  checkBoolean('escapeFormulas', escapeFormulas)
  checkOneOf('binary', binary, ['base64', 'hex'] as const)
  checkBoolean('flatten', flatten)
  checkOneOf('extraColumns', extraColumns, ['ignore', 'error'] as const)
  checkDelimiters(delimiter, quote, eol)
  const columns = normalizeColumns(options.columns)
  return Object.freeze({
    header,
    delimiter,
    quote,
    eol,
    bom,
    nullValue,
    escapeFormulas,
    binary,
    flatten,
    extraColumns,
    columns: columns && Object.freeze(columns.map((c) => Object.freeze(c))),
  })
}

/**
 * CSV format stage: RFC 4180 quoting, byte-identical to csv-stringify for the same options (a test
 * holds it to that), applying the shared value policy.
 * @example pipeline(fromIterable(rows), csv({ excel: true }), fileSink({ path: 'out.csv' }))
 */
export function csv(options: CsvOptions = {}): Formatter {
  return createFormatter(csvEncoder(normalizeCsvOptions(options)))
}

/** The CSV row encoder of normalised options; it learns the columns from the first row unless given. */
function csvEncoder(options: NormalizedCsvOptions): FormatterSpec {
  const { header, delimiter, quote, eol, bom, nullValue, escapeFormulas, binary, flatten, extraColumns } = options
  const givenColumns = options.columns !== undefined
  let columns: ReadonlyArray<Readonly<Required<CsvColumn>>> | undefined = options.columns
  // How to read a column given by name: its key; when flattening, a dotted name is a path too, and
  // a row holding both the dotted key and the nested path is ambiguous.
  const reader = (key: string) => {
    if (!flatten || !key.includes('.')) return (row: Row) => row[key]
    const path = key.split('.')
    return (row: Row) => {
      const nested = readPath(row, path)
      if (!Object.hasOwn(row, key)) return nested
      if (nested !== undefined)
        throw new ExportError('ERR_FORMAT', 'format', `Column ${JSON.stringify(key)} is ambiguous: the row has both the key and the nested path`)
      return row[key]
    }
  }
  let readers = columns?.map((c) => reader(c.key)) ?? []
  // Leaf paths already written, as JSON (a dotted key and a nested path are different fields).
  let known = new Set<string>()

  const cell = csvCellEncoder({ delimiter, quote, eol, nullValue, escapeFormulas: false, binary })
  const dataCell = escapeFormulas ? csvCellEncoder({ delimiter, quote, eol, nullValue, escapeFormulas, binary }) : cell
  // Column types a source knows (Postgres): numbers by type are never formula-escaped, even when
  // they arrive as text (int8, numeric), and with zero rows the header comes from their names.
  let sourceColumns: () => ColumnType[] | undefined = () => undefined
  let cells: Array<(value: unknown) => string> | undefined
  const cellsFor = (cols: ReadonlyArray<CsvColumn>) => {
    const types = new Map(sourceColumns()?.map((c) => [c.name, c]))
    return cols.map((c) => (isNumberColumn(types.get(c.key)) ? cell : dataCell))
  }
  const start = (cols: ReadonlyArray<CsvColumn>) => (bom ? '\ufeff' : '') + (header ? cols.map((c) => cell(c.header ?? c.key)).join(delimiter) + eol : '')

  return {
    contentType: 'text/csv; charset=utf-8',
    extension: 'csv',
    // Columns chosen or renamed are the row path's work; otherwise a source may write the cells.
    textEncoding: givenColumns ? undefined : { kind: 'csv', delimiter, quote, eol, nullValue, escapeFormulas, binary },
    begin: () => {
      if (columns === undefined) {
        columns = sourceColumns()?.map((c) => ({ key: c.name, header: c.name }))
        if (columns === undefined) throw new ExportError('ERR_FORMAT', 'format', 'The source sent encoded rows without telling its columns (for the header)')
        // (For rows the source sends after them.)
        readers = columns.map((c) => reader(c.key))
        known = new Set(columns.map((c) => JSON.stringify([c.key])))
      }
      return start(columns)
    },
    encode(row: Row, index: number) {
      if (columns === undefined) {
        const paths = leafPaths(row, flatten)
        const names = pathNames(paths)
        columns = names.map((key) => ({ key, header: key }))
        readers = paths.map((path) => {
          const key = path[0]!
          return path.length === 1 ? (r: Row) => r[key] : (r: Row) => readPath(r, path)
        })
        known = new Set(paths.map((path) => JSON.stringify(path)))
      }
      if (extraColumns === 'error') {
        const extra = !givenColumns
          ? leafPaths(row, flatten)
              .find((path) => !known.has(JSON.stringify(path)))
              ?.join('.')
          : leafPaths(row, flatten)
              .map((path) => path.join('.'))
              .find((name) => !columns!.some((c) => c.key === name))
        if (extra !== undefined) throw new ExportError('ERR_FORMAT', 'format', `a column the header does not have: ${JSON.stringify(extra)}`)
      }
      cells ??= cellsFor(columns)
      let text = index === 0 ? start(columns) : ''
      for (let i = 0; i < readers.length; i++) {
        if (i > 0) text += delimiter
        text += cells[i]!(readers[i]!(row)) // one cell encoder per reader
      }
      return text + eol
    },
    end: (rowCount) => {
      if (rowCount > 0) return ''
      columns ??= sourceColumns()?.map((c) => ({ key: c.name, header: c.name }))
      return columns ? start(columns) : bom ? '\ufeff' : ''
    },
    useSourceColumns: (columnsOf) => void (sourceColumns = columnsOf),
  }
}
