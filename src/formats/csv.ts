import { invalidOption } from '../errors.js'
import { checkBoolean, checkObject, checkOneOf } from '../options.js'
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

function checkText(name: string, value: unknown, allowEmpty: boolean): asserts value is string {
  if (typeof value !== 'string' || (!allowEmpty && value === '')) invalidOption(name, allowEmpty ? 'a string' : 'a non-empty string', value)
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
  } = options
  checkBoolean('header', header)
  checkText('delimiter', delimiter, false)
  checkText('quote', quote, false)
  checkText('eol', eol, false)
  checkBoolean('bom', bom)
  checkText('nullValue', nullValue, true)
  checkBoolean('escapeFormulas', escapeFormulas)
  checkOneOf('binary', binary, ['base64', 'hex'] as const)
  let columns = normalizeColumns(options.columns)
  let keys = columns?.map((c) => c.key) ?? []

  const cell = csvCellEncoder({ delimiter, quote, eol, nullValue, escapeFormulas: false, binary })
  const dataCell = escapeFormulas ? csvCellEncoder({ delimiter, quote, eol, nullValue, escapeFormulas, binary }) : cell
  const start = (cols: CsvColumn[]) =>
    (bom ? '\ufeff' : '') + (header ? cols.map((c) => cell(c.header ?? c.key)).join(delimiter) + eol : '')

  return createFormatter({
    contentType: 'text/csv; charset=utf-8',
    extension: 'csv',
    encode(row: Row, index: number) {
      if (columns === undefined) {
        columns = Object.keys(row).map((key) => ({ key, header: key }))
        keys = columns.map((c) => c.key)
      }
      let text = index === 0 ? start(columns) : ''
      for (let i = 0; i < keys.length; i++) {
        if (i > 0) text += delimiter
        text += dataCell(row[keys[i]])
      }
      return text + eol
    },
    end: (rowCount) => (rowCount > 0 ? '' : columns ? start(columns) : bom ? '\ufeff' : ''),
  })
}
