// MySQL / MariaDB values by the library's value policy, read from the text protocol's cells (a
// typeCast per query: the caller's pool settings, dateStrings or decimalNumbers, change nothing):
// - BIGINT as exact text (UNSIGNED up to 18446744073709551615); DECIMAL as exact text;
// - DATETIME as wall-clock ISO 8601 text with every fractional digit; TIMESTAMP as UTC ISO 8601
//   text (the session's time_zone is '+00:00'); DATE as its text; zero dates by `zeroDates`;
// - binary strings, BLOB and BIT(n > 1) as Buffer, BIT(1) as a boolean; GEOMETRY as its bytes
//   (MySQL's internal form: a 4-byte SRID, then WKB); JSON parsed (MariaDB's too, by its metadata);
// - TIME, ENUM and SET as text; YEAR and the smaller integers as numbers.
import { ExportError } from '../../core/errors.js'
import type { ColumnType } from '../../core/types.js'

/** The column types of the wire protocol (mysql2's `Types`). */
const T = {
  DECIMAL: 0,
  TINY: 1,
  SHORT: 2,
  LONG: 3,
  FLOAT: 4,
  DOUBLE: 5,
  NULL: 6,
  TIMESTAMP: 7,
  LONGLONG: 8,
  INT24: 9,
  DATE: 10,
  TIME: 11,
  DATETIME: 12,
  YEAR: 13,
  NEWDATE: 14,
  VARCHAR: 15,
  BIT: 16,
  JSON: 245,
  NEWDECIMAL: 246,
  ENUM: 247,
  SET: 248,
  TINY_BLOB: 249,
  MEDIUM_BLOB: 250,
  LONG_BLOB: 251,
  BLOB: 252,
  VAR_STRING: 253,
  STRING: 254,
  GEOMETRY: 255,
} as const

const UNSIGNED = 32
const BINARY_CHARSET = 63

/** A column as the server describes it (mysql2's field packet). */
export interface MysqlField {
  name: string
  columnType: number
  flags: number
  characterSet: number
  decimals: number
  columnLength: number
  /** MariaDB's extended metadata: `json` for a JSON column (a LONGTEXT on the wire). */
  extendedFormat?: string
}

/** What typeCast is handed for a cell (mysql2's wrapper). */
interface CastField {
  type: string
  name: string
  length: number
  string(encoding?: string): string | null
  buffer(): Buffer | null
}

/** What a zero date (`0000-00-00`, or a zero month or day) becomes: ERR_SOURCE, or NULL. */
export type ZeroDates = 'error' | 'null'

const isBinary = (field: MysqlField) => field.characterSet === BINARY_CHARSET
const TEXT_TYPES: ReadonlySet<number> = new Set([T.VARCHAR, T.VAR_STRING, T.STRING, T.TINY_BLOB, T.MEDIUM_BLOB, T.LONG_BLOB, T.BLOB])

/**
 * The value reader of one query's fields: a typeCast for mysql2's text protocol (called per cell,
 * in column order, `fields` as the server described them).
 */
export function castFor(
  fields: () => readonly MysqlField[],
  zeroDates: ZeroDates,
  onError?: (error: unknown) => void,
): (cell: CastField, next: () => unknown) => unknown {
  let column = 0
  return (cell, next) => {
    const list = fields()
    const field = list[column]!
    column = (column + 1) % list.length
    if (!onError) return readCell(field, cell, next, zeroDates)
    // (Thrown, mysql2 would read the rest of the result before it reports it: hours on a big one.)
    try {
      return readCell(field, cell, next, zeroDates)
    } catch (error) {
      onError(error)
      return null
    }
  }
}

function readCell(field: MysqlField, cell: CastField, next: () => unknown, zeroDates: ZeroDates): unknown {
  switch (field.columnType) {
    case T.TINY:
    case T.SHORT:
    case T.INT24:
    case T.LONG:
    case T.YEAR:
    case T.FLOAT:
    case T.DOUBLE:
      return next()
    case T.LONGLONG:
    case T.DECIMAL:
    case T.NEWDECIMAL:
    case T.TIME:
      return cell.string('ascii')
    case T.DATE:
    case T.NEWDATE:
      return date(cell.string('ascii'), field, zeroDates)
    case T.DATETIME:
      return timestamp(cell.string('ascii'), field, zeroDates, '')
    case T.TIMESTAMP:
      return timestamp(cell.string('ascii'), field, zeroDates, '+00:00')
    case T.BIT: {
      const bytes = cell.buffer()
      return bytes === null ? null : field.columnLength === 1 ? bytes[0] === 1 : bytes
    }
    case T.GEOMETRY:
      return cell.buffer()
    case T.JSON:
      return json(cell.string('utf8'), field)
    default:
      if (field.extendedFormat === 'json') return json(cell.string(), field)
      if (TEXT_TYPES.has(field.columnType) && isBinary(field)) return cell.buffer()
      return cell.string() // (in the result's character set: utf8mb4, latin1...)
  }
}

function json(text: string | null, field: MysqlField): unknown {
  if (text === null) return null
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw new ExportError('ERR_SOURCE', 'source', `Column ${field.name} holds text that is not JSON`, { cause: error })
  }
}

const ZERO_DATE = /^\d{4}-(?:00-\d\d|\d\d-00)/

function zero(text: string, field: MysqlField, zeroDates: ZeroDates): null {
  if (zeroDates === 'null') return null
  throw new ExportError(
    'ERR_SOURCE',
    'source',
    `Column ${field.name} holds the zero date ${text}, which is no date: pass zeroDates: 'null' to export it as NULL, or exclude it in the query`,
  )
}

function date(text: string | null, field: MysqlField, zeroDates: ZeroDates): string | null {
  if (text === null) return null
  return ZERO_DATE.test(text) ? zero(text, field, zeroDates) : text
}

/** `2026-02-01 10:00:00.123456` -> `2026-02-01T10:00:00.123456` (+ `offset`). */
function timestamp(text: string | null, field: MysqlField, zeroDates: ZeroDates, offset: string): string | null {
  if (text === null) return null
  if (ZERO_DATE.test(text)) return zero(text, field, zeroDates)
  return `${text.slice(0, 10)}T${text.slice(11)}${offset}`
}

/**
 * The column type of a field, for typed formats: BIGINT -> INT64 (UNSIGNED: DECIMAL(20,0)),
 * DECIMAL(p,s) (past 38 digits: exact text), DATETIME -> wall-clock TIMESTAMP, TIMESTAMP -> UTC TIMESTAMP, DATE, JSON, binary
 * -> BYTE_ARRAY, BIT(1) -> BOOLEAN, anything else -> STRING. Nullable unless NOT NULL.
 */
export function mysqlColumnType(name: string, field: MysqlField, zeroDates: ZeroDates = 'error'): ColumnType {
  // (A zero date read as NULL makes a NOT NULL date column nullable.)
  const temporal = [T.DATE, T.NEWDATE, T.DATETIME, T.TIMESTAMP].includes(field.columnType as 10)
  const nullable = (field.flags & 1) === 0 || (temporal && zeroDates === 'null') // NOT_NULL_FLAG
  const type = ((): Omit<ColumnType, 'name'> => {
    const unsigned = (field.flags & UNSIGNED) !== 0
    switch (field.columnType) {
      case T.TINY:
      case T.SHORT:
      case T.INT24:
      case T.YEAR:
        return { type: 'INT32' }
      case T.LONG:
        return { type: unsigned ? 'INT64' : 'INT32' }
      case T.LONGLONG:
        return unsigned ? { type: 'DECIMAL', precision: 20, scale: 0 } : { type: 'INT64' }
      case T.FLOAT:
      case T.DOUBLE:
        return { type: 'DOUBLE' }
      case T.DECIMAL:
      case T.NEWDECIMAL: {
        const scale = field.decimals
        // (The length counts a sign, unless unsigned, and a point, if there is a scale.)
        const precision = field.columnLength - (scale > 0 ? 1 : 0) - (unsigned ? 0 : 1)
        // Past 38 digits Parquet readers (DuckDB, Arrow, Spark) misread or refuse a DECIMAL: exact text.
        return precision > 38 ? { type: 'STRING', numeric: true } : { type: 'DECIMAL', precision, scale }
      }
      case T.DATE:
      case T.NEWDATE:
        return { type: 'DATE' }
      case T.DATETIME:
        return { type: 'TIMESTAMP', utc: false }
      case T.TIMESTAMP:
        return { type: 'TIMESTAMP' }
      case T.JSON:
        return { type: 'JSON' }
      case T.BIT:
        return field.columnLength === 1 ? { type: 'BOOLEAN' } : { type: 'BYTE_ARRAY' }
      case T.GEOMETRY:
        return { type: 'BYTE_ARRAY' }
      default:
        if (field.extendedFormat === 'json') return { type: 'JSON' }
        if (TEXT_TYPES.has(field.columnType) && isBinary(field)) return { type: 'BYTE_ARRAY' }
        return { type: 'STRING' }
    }
  })()
  return { name, ...type, ...(nullable ? {} : { nullable: false }) }
}

const READ_TIMESTAMP = /^(\d{4,}-\d\d-\d\d)T(\d\d:\d\d:\d\d(?:\.\d+)?)(?:\+00:00)?$/

/**
 * A value as read (a key, a watermark) bound back into a query: a DATETIME or TIMESTAMP column's
 * text (`field`; without one, any such text) in the form MySQL and MariaDB parse
 * (`2026-02-01 10:00:00.5`; a TIMESTAMP's `+00:00` dropped, the session being in UTC); anything
 * else as it is.
 */
export function bindable(value: unknown, field?: MysqlField): unknown {
  if (typeof value !== 'string' || (field && ![T.DATE, T.NEWDATE, T.DATETIME, T.TIMESTAMP].includes(field.columnType as 10))) return value
  const m = READ_TIMESTAMP.exec(value)
  return m ? `${m[1]} ${m[2]}` : value
}
