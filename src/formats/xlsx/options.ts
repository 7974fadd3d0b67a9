// The XLSX format's options: Excel's limits, the option types, and their checks and defaults.
import { availableParallelism } from 'node:os'
import { invalidOption } from '../../core/errors.js'
import { checkBoolean, checkObject, checkOneOf, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { normalizeColumns, type Column, type ColumnsOption } from '../columns.js'
import type { BinaryEncoding } from '../values.js'

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
   * Numbers beyond 15 significant digits (JS numbers by their shortest text `String(n)`, so
   * 9007199254740991 and 0.1 + 0.2 too; bigint, int8 and numeric text, Decimal128): `text`
   * (default; exact, as Excel would cut the number) or `number` (Excel keeps 15 significant digits).
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
export function checkSheetName(name: unknown, option = 'sheetName'): asserts name is string {
  const expected = "a sheet name of 1-31 characters without : \\ / ? * [ ], not starting or ending with ' (Excel's rules)"
  if (typeof name !== 'string' || name.length === 0 || name.length > 31 || /[:\\/?*[\]]/.test(name) || /^'|'$/.test(name) || name.toLowerCase() === 'history') {
    invalidOption(option, expected, name)
  }
}

const XLSX_OPTION_NAMES = optionNames<XlsxOptions>({
  columns: true,
  header: true,
  sheetName: true,
  maxRowsPerSheet: true,
  bigNumbers: true,
  longText: true,
  extraColumns: true,
  dateTimeFormat: true,
  dateFormat: true,
  binary: true,
  compressionLevel: true,
  threads: true,
})

/**
 * Checks XLSX options and applies the defaults, without building a stream: ERR_INVALID_OPTION
 * names the first bad option. The result is frozen.
 */
export function normalizeXlsxOptions(options: XlsxOptions = {}): NormalizedXlsxOptions {
  checkObject('options', options, XLSX_OPTION_NAMES)
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
