import type { Readable } from 'node:stream'
import { parse, type CastingFunction, type Parser } from 'csv-parse'
import { invalidOption, toExportError, ExportError } from '../errors.js'
import { checkBoolean, checkObject, checkString } from '../options.js'
import { uniqueColumnNames } from './column-names.js'
import { attachInput, checkFileInput, type FileInputOptions, type FileInputProgress } from './file-input.js'
import type { SourceExtras } from '../types.js'

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
}

/** A CSV file source: rows as objects, with input progress in bytes. */
export type CsvSource = Readable & SourceExtras & FileInputProgress

function sourceError(error: Error & { code?: string; lines?: number }): ExportError {
  if (error instanceof ExportError) return error
  if (error.code?.startsWith('CSV_')) {
    return new ExportError('ERR_SOURCE', 'source', `Invalid CSV at line ${error.lines}: ${error.message}`, { cause: error })
  }
  return toExportError(error, 'ERR_SOURCE', 'source')
}

/**
 * Rows of a CSV file or byte stream, parsed with csv-parse: RFC 4180 quoting (commas, quotes and
 * newlines inside quoted fields), CRLF or LF, an optional BOM; gzipped input is detected and
 * gunzipped on the fly. A malformed or ragged row fails with ERR_SOURCE naming its line.
 */
export function csvSource(options: CsvSourceOptions): CsvSource {
  checkObject('options', options)
  checkFileInput(options)
  const { columns = true, delimiter = ',', bom = true, cast = false } = options
  if (columns !== true && !(Array.isArray(columns) && columns.length > 0 && columns.every((c) => typeof c === 'string' && c !== ''))) {
    invalidOption('columns', '`true` or a non-empty array of column names', columns)
  }
  checkString('delimiter', delimiter)
  checkBoolean('bom', bom)
  if (typeof cast !== 'boolean' && typeof cast !== 'function') invalidOption('cast', 'a boolean or a function', cast)

  if (Array.isArray(columns) && new Set(columns).size !== columns.length) invalidOption('columns', 'column names without repeats', columns)
  // A header that repeats a name keeps every column: the repeats become name_2, name_3...
  const header = columns === true ? (names: string[]) => uniqueColumnNames(names) : columns
  const parser: Parser = parse({ columns: header, delimiter, bom, cast, cast_date: cast === true, skip_empty_lines: true })
  const destroy = parser._destroy.bind(parser)
  parser._destroy = (error, callback) => destroy(error, (result) => callback(result ? sourceError(result) : result))
  return attachInput(options, parser)
}
