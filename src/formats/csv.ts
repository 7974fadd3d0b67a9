import { ExportError, invalidOption } from '../errors.js'
import { checkBoolean, checkObject, checkOneOf, checkString } from '../options.js'
import { createFormatter, type Formatter, type Row } from './formatter.js'
import { csvCellEncoder, type BinaryEncoding } from './values.js'

/** A column: the row key to read and the header to write. */
export interface CsvColumn {
  key: string
  header?: string
}

export interface CsvOptions {
  /**
   * Columns in output order. Strings, `{ key, header }` objects (to rename), or a
   * `{ key: header }` map. Default: the first row's keys; later rows' extra keys are ignored.
   */
  columns?: ReadonlyArray<string | CsvColumn> | Readonly<Record<string, string>>
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
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Dot paths of a row's leaves: nested plain objects are walked, anything else is a leaf. */
function leafPaths(row: Record<string, unknown>, flatten: boolean, prefix = ''): string[] {
  if (!flatten) return Object.keys(row)
  return Object.keys(row).flatMap((key) => {
    const value = row[key]
    return isPlainObject(value) && Object.keys(value).length > 0 ? leafPaths(value, true, `${prefix}${key}.`) : [`${prefix}${key}`]
  })
}

function normalizeColumns(columns: CsvOptions['columns']): CsvColumn[] | undefined {
  if (columns === undefined) return undefined
  const list: Array<string | CsvColumn> = Array.isArray(columns)
    ? [...columns]
    : typeof columns === 'object' && columns !== null
      ? Object.entries(columns).map(([key, header]) => ({ key, header }))
      : invalidOption('columns', 'an array of column names or a { key: header } object', columns)
  if (list.length === 0) invalidOption('columns', 'a non-empty list', columns)
  return list.map((column, i) => {
    if (typeof column === 'string' && column !== '') return { key: column, header: column }
    if (typeof column === 'object' && column !== null && typeof column.key === 'string' && column.key !== '') {
      if (column.header !== undefined && typeof column.header !== 'string') invalidOption(`columns[${i}].header`, 'a string', column.header)
      return { key: column.key, header: column.header ?? column.key }
    }
    return invalidOption(`columns[${i}]`, 'a column name or { key, header }', column)
  })
}

/**
 * CSV format stage: RFC 4180 quoting, byte-identical to csv-stringify for the same options (a test
 * holds it to that), applying the shared value policy.
 * @example pipeline(fromIterable(rows), csv({ excel: true }), fileSink({ path: 'out.csv' }))
 */
export function csv(options: CsvOptions = {}): Formatter {
  checkObject('options', options)
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
  let columns = normalizeColumns(options.columns)
  // How to read each column's value: a key, or a path of keys when flattening.
  const reader = (key: string) => {
    if (!flatten || !key.includes('.')) return (row: Row) => row[key]
    const path = key.split('.')
    return (row: Row) => path.reduce<unknown>((value, k) => (isPlainObject(value) ? value[k] : undefined), row)
  }
  let readers = columns?.map((c) => reader(c.key)) ?? []
  let known = new Set(columns?.map((c) => c.key))

  const cell = csvCellEncoder({ delimiter, quote, eol, nullValue, escapeFormulas: false, binary })
  const dataCell = escapeFormulas ? csvCellEncoder({ delimiter, quote, eol, nullValue, escapeFormulas, binary }) : cell
  const start = (cols: CsvColumn[]) =>
    (bom ? '\ufeff' : '') + (header ? cols.map((c) => cell(c.header ?? c.key)).join(delimiter) + eol : '')

  return createFormatter({
    contentType: 'text/csv; charset=utf-8',
    extension: 'csv',
    encode(row: Row, index: number) {
      if (columns === undefined) {
        columns = leafPaths(row, flatten).map((key) => ({ key, header: key }))
        readers = columns.map((c) => reader(c.key))
        known = new Set(columns.map((c) => c.key))
      }
      if (extraColumns === 'error') {
        const extra = leafPaths(row, flatten).find((path) => !known.has(path))
        if (extra !== undefined) throw new ExportError('ERR_FORMAT', 'format', `a column the header does not have: ${JSON.stringify(extra)}`)
      }
      let text = index === 0 ? start(columns) : ''
      for (let i = 0; i < readers.length; i++) {
        if (i > 0) text += delimiter
        text += dataCell(readers[i](row))
      }
      return text + eol
    },
    end: (rowCount) => (rowCount > 0 ? '' : columns ? start(columns) : bom ? '\ufeff' : ''),
  })
}
