import type { Readable } from 'node:stream'
import { Parser, type CastingFunction } from 'csv-parse'
import { invalidOption, toExportError, ExportError } from '../../core/errors.js'
import { checkBoolean, checkObject, checkOneOf, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { uniqueColumnNames } from '../column-names.js'
import { attachInput, checkFileInput, type FileInputOptions, type FileInputProgress } from './input.js'
import type { ColumnType, SourceExtras } from '../../core/types.js'
import { columnTypeOf, CSV_COLUMN_TYPES, inferredValue, inferType, typedValue, type CsvColumnType } from './csv-types.js'

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

function sourceError(error: Error & { code?: string; lines?: number }): ExportError {
  if (error instanceof ExportError) return error
  if (error.code?.startsWith('CSV_')) {
    return new ExportError('ERR_SOURCE', 'source', `Invalid CSV at line ${error.lines}: ${error.message}`, { cause: error })
  }
  return toExportError(error, 'ERR_SOURCE', 'source')
}

/** csv-parse's Parser, failing with the ExportError of a CSV source. */
class CsvParser extends Parser {
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    super._destroy(error, (result) => callback(result ? sourceError(result) : result))
  }
}

/** A parsed record with csv-parse's `info` (`info: true`). */
type Record_ = { record: Record<string, unknown>; info: { lines: number } }

/**
 * A CSV parser whose rows are typed (see CsvSourceOptions.types): each record is converted on
 * its way out; with inferred types, the first `sample` records wait until their types are known.
 */
class TypedCsvParser extends CsvParser {
  #types: Map<string, CsvColumnType> | undefined
  readonly #declared: boolean
  readonly #sample: number
  #held: Record_[] = []
  #checked = false // declared types: every name is a column (checked at the first record)

  constructor(options: ConstructorParameters<typeof Parser>[0], types: Record<string, CsvColumnType> | 'infer', sample: number) {
    super({ ...options, info: true })
    this.#declared = types !== 'infer'
    this.#types = types === 'infer' ? undefined : new Map(Object.entries(types))
    this.#sample = sample
  }

  /** The types of every column, in the file's order, once known (after the first record; with inferred types, after the sample). */
  columnTypes(): ColumnType[] | undefined {
    if (this.#declared && !this.#checked) return undefined
    return this.#types && [...this.#types].map(([name, type]) => columnTypeOf(name, type))
  }

  override push(chunk: unknown): boolean {
    if (chunk === null) {
      this.#release()
      return super.push(null)
    }
    if (this.#types === undefined) {
      this.#held.push(chunk as Record_)
      if (this.#held.length >= this.#sample) this.#release()
      return true
    }
    return this.#pass(chunk as Record_)
  }

  // The sample's types inferred; the held records sent on.
  #release(): void {
    if (this.#types === undefined) {
      const names = Object.keys(this.#held[0]?.record ?? {})
      this.#types = new Map(names.map((name) => [name, inferType(this.#held.map((held) => held.record[name]))]))
    }
    const held = this.#held
    this.#held = []
    for (const record of held) this.#pass(record)
  }

  #pass({ record, info }: Record_): boolean {
    const row: Record<string, unknown> = {}
    try {
      if (this.#declared && !this.#checked) {
        this.#checked = true
        const missing = [...this.#types!.keys()].filter((name) => !(name in record))
        if (missing.length > 0) {
          throw new ExportError(
            'ERR_INVALID_OPTION',
            'options',
            `\`types\` names ${missing.map((m) => JSON.stringify(m)).join(', ')}, not a column of the CSV (its columns: ${Object.keys(record)
              .map((m) => JSON.stringify(m))
              .join(', ')})`,
          )
        }
        // Every column, in the file's order: the ones not declared are text.
        this.#types = new Map(Object.keys(record).map((name) => [name, this.#types!.get(name) ?? 'text']))
      }
      for (const [name, cell] of Object.entries(record)) {
        const type = this.#types!.get(name) ?? 'text'
        row[name] = this.#declared ? typedValue(type, cell, { line: info.lines, column: name }) : inferredValue(type, cell)
      }
    } catch (error) {
      this.destroy(error as Error)
      return false
    }
    return super.push(row)
  }
}

/**
 * Rows of a CSV file or byte stream, parsed with csv-parse: RFC 4180 quoting (commas, quotes and
 * newlines inside quoted fields), CRLF or LF, an optional BOM; gzip or zstd input is detected and
 * decompressed on the fly. A malformed or ragged row fails with ERR_SOURCE naming its line.
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

  if (Array.isArray(columns) && new Set(columns).size !== columns.length) invalidOption('columns', 'column names without repeats', columns)
  // A header that repeats a name keeps every column: the repeats become name_2, name_3...
  const header = columns === true ? (names: string[]) => uniqueColumnNames(names) : columns
  // An unquoted empty cell is NULL with empty: 'null' (a quoted "" stays an empty string).
  const emptyCast: CastingFunction | false = empty === 'null' ? (value, context) => (value === '' && !context.quoting ? null : value) : false
  const parserOptions = { columns: header, delimiter, bom, cast: emptyCast || cast, cast_date: cast === true, skip_empty_lines: true }
  if (types === undefined) return attachInput(options, new CsvParser(parserOptions))
  return attachInput(options, new TypedCsvParser(parserOptions, types, inferRows))
}

function checkTypes(types: CsvSourceOptions['types']): void {
  if (types === undefined || types === 'infer') return
  if (typeof types !== 'object' || types === null || Array.isArray(types)) invalidOption('types', "'infer' or an object of column types", types)
  for (const [name, type] of Object.entries(types)) checkOneOf(`types.${name}`, type, CSV_COLUMN_TYPES)
}
