import type { Readable } from 'node:stream'
import { Parser, type CastingFunction } from 'csv-parse'
import { invalidOption } from '../../core/errors.js'
import { checkBoolean, checkObject, checkOneOf, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { uniqueColumnNames } from '../column-names.js'
import { attachInput, checkFileInput, type FileInputOptions, type FileInputProgress } from './input.js'
import type { SourceExtras } from '../../core/types.js'
import { CSV_COLUMN_TYPES, type CsvColumnType } from './csv-types.js'
import { CsvReader, csvSourceError } from './csv-reader.js'

export interface CsvSourceOptions extends FileInputOptions {
  /** `true` (default): the first line names the columns. Or the column names, when the file has no header. */
  columns?: true | string[]
  /** Field delimiter. Default `,`. */
  delimiter?: string
  /** Strip a UTF-8 byte order mark. Default `true`. */
  bom?: boolean
  /**
   * Values are strings by default (lossless). `true` converts numbers and dates as csv-parse does;
   * a function `(value, context) => unknown` converts as you say.
   */
  cast?: boolean | CastingFunction
  /**
   * Column types (see CsvColumnType): `{ id: 'integer', paid: 'boolean' }` converts those columns
   * exactly, and a cell that is not of its type fails the export naming it; the columns left out
   * are text. `'infer'`: types from the first `inferRows` rows, and a later cell not of its
   * column's exact form (`007` or `1e3` in an integer column) stays its text. Not with `cast`.
   */
  types?: Record<string, CsvColumnType> | 'infer'
  /** Rows sampled by `types: 'infer'`. Default 1000. */
  inferRows?: number
  /**
   * An empty cell of a text column: `'string'` (default) an empty string; `'null'` NULL, while a
   * quoted `""` stays an empty string (as PostgreSQL writes CSV). In a typed column it is NULL.
   */
  empty?: 'string' | 'null'
}

const CSV_SOURCE_OPTIONS = optionNames<CsvSourceOptions>({
  path: true,
  stream: true,
  columns: true,
  delimiter: true,
  bom: true,
  cast: true,
  types: true,
  inferRows: true,
  empty: true,
})

/** A CSV file source: rows as objects, with input progress in bytes. */
export type CsvSource = Readable & SourceExtras & FileInputProgress

/** csv-parse's Parser (for `cast`, its own conversion), failing with the ExportError of a CSV source. */
class CsvParser extends Parser {
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    super._destroy(error, (result) => callback(result ? csvSourceError(result) : result))
  }
}

/**
 * Rows of a CSV file or byte stream: RFC 4180 quoting (commas, quotes and newlines inside quoted
 * fields), CRLF, LF or CR, an optional BOM; gzip or zstd input is detected and decompressed on the
 * fly. A malformed or ragged row fails with ERR_SOURCE naming its line. Read as csv-parse reads it
 * (the same rows, the same errors), by a reader four times as fast; `cast` is csv-parse's own.
 */
export function csvSource(options: CsvSourceOptions): CsvSource {
  checkObject('options', options, CSV_SOURCE_OPTIONS)
  checkFileInput(options)
  const { columns = true, delimiter = ',', bom = true, cast = false, types, inferRows = 1000, empty = 'string' } = options
  if (columns !== true && !(Array.isArray(columns) && columns.length > 0 && columns.every((c) => typeof c === 'string' && c !== ''))) {
    invalidOption('columns', '`true` or a non-empty array of column names', columns)
  }
  checkString('delimiter', delimiter)
  checkBoolean('bom', bom)
  if (typeof cast !== 'boolean' && typeof cast !== 'function') invalidOption('cast', 'a boolean or a function', cast)
  checkTypes(types)
  checkPositiveInteger('inferRows', inferRows)
  checkOneOf('empty', empty, ['string', 'null'] as const)
  if (types !== undefined && cast !== false) invalidOption('cast', 'left out with `types` (one of them converts the cells)', cast)
  if (empty === 'null' && cast !== false) invalidOption('cast', "left out with `empty: 'null'`", cast)

  // (Matched as bytes: it must be whole characters, and never what invalid bytes decode to.)
  if (/["\r\n\uFFFD]/.test(delimiter) || Buffer.from(delimiter).toString() !== delimiter)
    invalidOption('delimiter', 'a delimiter of whole characters without quotes or line breaks', delimiter)
  if (Array.isArray(columns) && new Set(columns).size !== columns.length) invalidOption('columns', 'column names without repeats', columns)
  if (cast === false) return attachInput(options, new CsvReader({ columns, delimiter, bom, emptyNull: empty === 'null', types, inferRows }))
  // A header that repeats a name keeps every column: the repeats become name_2, name_3...
  const header = columns === true ? (names: string[]) => uniqueColumnNames(names) : columns
  return attachInput(options, new CsvParser({ columns: header, delimiter, bom, cast, cast_date: cast === true, skip_empty_lines: true }))
}

function checkTypes(types: CsvSourceOptions['types']): void {
  if (types === undefined || types === 'infer') return
  if (typeof types !== 'object' || types === null || Array.isArray(types)) invalidOption('types', "'infer' or an object of column types", types)
  for (const [name, type] of Object.entries(types)) checkOneOf(`types.${name}`, type, CSV_COLUMN_TYPES)
}
