// Typed CSV input: a cell becomes the value its column's type says, exactly, or the export fails
// naming the cell (declared types); inferred types convert a cell only when it has the type's exact
// form, and keep any other cell as its text: never a silent change of a value.
import { ExportError } from '../../core/errors.js'
import type { ColumnType } from '../../core/types.js'

/**
 * The type of a CSV column:
 * - `integer`: `-12`, `0`; a number, or a bigint past 2^53 (no leading zeros, no exponent)
 * - `bigint`: an integer as a bigint
 * - `number`: a decimal that a JS number holds exactly (`1.5`, `-0.25`, `1e3`; not `0.1000000000000000055`)
 * - `numeric`: a decimal kept as its exact text (`19.99`), written as a number by typed formats
 * - `boolean`: `true`/`false` (any case), `t`/`f`
 * - `timestamp`: ISO 8601 with a zone (`2026-11-30T10:00:00Z`, `2026-11-30 10:00:00+01`), as a Date, to the millisecond
 * - `date`: `2026-11-30`, kept as that text, a date for typed formats
 * - `json`: any JSON text, parsed
 * - `text`: as it is
 */
export type CsvColumnType = 'integer' | 'bigint' | 'number' | 'numeric' | 'boolean' | 'timestamp' | 'date' | 'json' | 'text'

export const CSV_COLUMN_TYPES: readonly CsvColumnType[] = ['integer', 'bigint', 'number', 'numeric', 'boolean', 'timestamp', 'date', 'json', 'text']

const INTEGER = /^[+-]?(0|[1-9]\d*)$/
const DECIMAL = /^[+-]?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,3})?)?(Z|[+-]\d{2}(?::?\d{2})?)$/i
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/

/** A value that is not of the type: the reason, for a declared type's error. */
export class NotOfType {
  constructor(readonly reason: string) {}
}

/**
 * The general readings of a number and a timestamp, which the fast ones (in PARSERS) stand in for
 * where they can: exported for the test that holds the two equal (test/sources/csv-types-fast.test.ts).
 */
export const GENERAL = {
  number(text: string): number | NotOfType {
    if (!DECIMAL.test(text)) return new NotOfType('is not a decimal number')
    const value = Number(text)
    return Number.isFinite(value) && sameDecimal(String(value), text) ? value : new NotOfType('has more digits than a JS number holds (use numeric)')
  },
  timestamp(text: string): Date | NotOfType {
    const m = TIMESTAMP.exec(text)
    if (!m) return new NotOfType('is not an ISO 8601 timestamp with a zone (Z or +01:00)')
    const zone = m[8]!.toUpperCase() === 'Z' ? 'Z' : m[8]!.length === 3 ? `${m[8]}:00` : m[8]!.replace(/^([+-]\d{2}):?(\d{2})$/, '$1:$2')
    const date = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] ?? '00'}${m[7] ?? ''}${zone}`)
    return Number.isNaN(date.getTime()) || !validDay(m) || Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6] ?? 0) > 59
      ? new NotOfType('is not a valid timestamp')
      : date
  },
}

// The value of `text` as the type, or NotOfType.
const PARSERS: Record<CsvColumnType, (text: string) => unknown> = {
  integer: (text) => {
    if (!INTEGER.test(text)) return new NotOfType('is not an integer (digits, no leading zeros)')
    const value = Number(text)
    return Number.isSafeInteger(value) ? value : BigInt(text)
  },
  bigint: (text) => (INTEGER.test(text) ? BigInt(text) : new NotOfType('is not an integer (digits, no leading zeros)')),
  number: (text) => {
    // At most 15 digits and no exponent: a double holds it exactly (DBL_DIG), no check needed.
    if (text.length <= 17 && plainDigits(text) <= 15 && DECIMAL.test(text)) return Number(text)
    return GENERAL.number(text)
  },
  numeric: (text) => (DECIMAL.test(text) ? text.replace(/^\+/, '') : new NotOfType('is not a decimal number')),
  boolean: (text) => {
    const lower = text.toLowerCase()
    if (lower === 'true' || text === 't') return true
    if (lower === 'false' || text === 'f') return false
    return new NotOfType('is not a boolean (true, false, t, f)')
  },
  timestamp: (text) => utcTimestamp(text) ?? GENERAL.timestamp(text),
  date: (text) => {
    const m = DATE.exec(text)
    return m && validDay(m) ? text : new NotOfType('is not a date (YYYY-MM-DD)')
  },
  json: (text) => {
    try {
      return JSON.parse(text) as unknown
    } catch {
      return new NotOfType('is not JSON')
    }
  },
  text: (text) => text,
}

/** The digits of a decimal text without an exponent; Infinity with one. */
function plainDigits(text: string): number {
  let n = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0x30 && c <= 0x39) n++
    else if (c === 0x65 || c === 0x45) return Infinity // e, E
  }
  return n
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** The number of the digits of `text` from `at` to `to`, or -1 if one is not a digit. */
function digitsAt(text: string, at: number, to: number): number {
  let n = 0
  for (let i = at; i < to; i++) {
    const d = text.charCodeAt(i) - 0x30
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n
}

/**
 * The common timestamp, `2026-11-30T10:00:00Z` or `2026-11-30 10:00:00.123Z` (what toISOString
 * and most exports write), read without a regular expression or date parsing: its Date, a
 * NotOfType for a day or time out of range, or undefined for any other form (read by the
 * TIMESTAMP expression; the two are held equal by test/sources/csv-types.test.ts).
 */
function utcTimestamp(text: string): Date | NotOfType | undefined {
  const length = text.length
  if ((length !== 20 && length !== 24) || (text[length - 1] !== 'Z' && text[length - 1] !== 'z')) return undefined
  if (text[4] !== '-' || text[7] !== '-' || text[13] !== ':' || text[16] !== ':' || (length === 24 && text[19] !== '.')) return undefined
  const t = text[10]
  if (t !== 'T' && t !== 't' && t !== ' ') return undefined
  const year = digitsAt(text, 0, 4)
  const month = digitsAt(text, 5, 7)
  const day = digitsAt(text, 8, 10)
  const hour = digitsAt(text, 11, 13)
  const minute = digitsAt(text, 14, 16)
  const second = digitsAt(text, 17, 19)
  const ms = length === 24 ? digitsAt(text, 20, 23) : 0
  if (year < 100 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0 || ms < 0) return undefined // (years before 100: Date.UTC reads 0-99 as 1900-1999)
  const leap = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  if (month < 1 || month > 12 || day < 1 || day > DAYS_IN_MONTH[month - 1]! + (leap ? 1 : 0) || hour > 23 || minute > 59 || second > 59)
    return new NotOfType('is not a valid timestamp')
  return new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms))
}

function validDay(m: RegExpExecArray): boolean {
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])]
  const date = new Date(Date.UTC(year, month - 1, day))
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day
}

/** Whether two decimal texts are the same number (`1.50` and `1.5`, `1e3` and `1000`). */
function sameDecimal(a: string, b: string): boolean {
  return canonical(a) === canonical(b)
}

function canonical(text: string): string {
  const m = /^([+-]?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)
  if (!m) return text
  const digits = `${m[2]}${m[3] ?? ''}`
  const exponent = Number(m[4] ?? 0) - (m[3]?.length ?? 0)
  const trimmed = digits.replace(/^0+/, '')
  if (trimmed === '') return '0'
  const significant = trimmed.replace(/0+$/, '')
  return `${m[1] === '-' ? '-' : ''}${significant}e${exponent + trimmed.length - significant.length}`
}

/** The ColumnType a typed format (Parquet, XLSX) gets for a CSV column of `type`. */
export function columnTypeOf(name: string, type: CsvColumnType): ColumnType {
  switch (type) {
    case 'integer':
    case 'bigint':
      return { name, type: 'INT64' }
    case 'number':
      return { name, type: 'DOUBLE' }
    case 'numeric':
      return { name, type: 'STRING', numeric: true }
    case 'boolean':
      return { name, type: 'BOOLEAN' }
    case 'timestamp':
      return { name, type: 'TIMESTAMP' }
    case 'date':
      return { name, type: 'DATE' }
    case 'json':
      return { name, type: 'JSON' }
    case 'text':
      return { name, type: 'STRING' }
  }
}

/**
 * A declared type's value of a cell (`null` stays null); a cell not of its type fails the export
 * with ERR_SOURCE naming the line, the column and the cell.
 */
export function typedValue(type: CsvColumnType, cell: unknown, where: { line: number; column: string }): unknown {
  if (cell === null || typeof cell !== 'string') return cell
  if (cell === '' && type !== 'text') return null // an empty cell of a typed column holds no value
  const value = PARSERS[type](cell)
  if (value instanceof NotOfType) {
    throw new ExportError('ERR_SOURCE', 'source', `Line ${where.line}, column ${JSON.stringify(where.column)}: ${JSON.stringify(cell)} ${value.reason}`)
  }
  return value
}

/** An inferred type's value of a cell: converted when it has the type's exact form, else its text as it is. */
export function inferredValue(type: CsvColumnType, cell: unknown): unknown {
  if (cell === null || typeof cell !== 'string') return cell
  if (cell === '' && type !== 'text') return null
  const value = PARSERS[type](cell)
  return value instanceof NotOfType ? cell : value
}

// The types inference tries, narrowest first (json and numeric only when declared).
const INFERRED: readonly CsvColumnType[] = ['integer', 'number', 'boolean', 'timestamp', 'date']

/**
 * The type of a column from sampled cells: the first of integer, number, boolean (true/false,
 * any case), timestamp, date that every non-empty cell has exactly; else text. A column of
 * empty cells is text.
 */
export function inferType(cells: readonly unknown[]): CsvColumnType {
  const texts = cells.filter((cell): cell is string => typeof cell === 'string' && cell !== '')
  if (texts.length === 0) return 'text'
  for (const type of INFERRED) {
    // t / f alone are not inferred as booleans (a column of grades or codes); declared, they are.
    const fits = (text: string) => !(PARSERS[type](text) instanceof NotOfType) && (type !== 'boolean' || text.length > 1)
    if (texts.every(fits)) return type
  }
  return 'text'
}
