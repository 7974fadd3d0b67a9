// A Parquet column: its schema element, the converter from a row's value to what the writer
// stores (a misfit is ERR_FORMAT naming the row and column), and the type inferred from values.
import { ExportError, describe } from '../../core/errors.js'
import type { ColumnType, Row } from '../../core/types.js'
import { bsonValue, jsonValue } from '../values.js'

const DAY_MS = 86_400_000
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
const encoder = new TextEncoder()

type BsonLike = { _bsontype?: string; toString(): string }
const bsonType = (value: unknown) => (typeof value === 'object' && value !== null ? (value as BsonLike)._bsontype : undefined)

/** The Parquet schema element of a column. */
export function schemaElement(column: ColumnType) {
  const repetition_type = column.nullable === false ? 'REQUIRED' : 'OPTIONAL'
  const base = { name: column.name, repetition_type } as const
  switch (column.type) {
    case 'STRING':
      return { ...base, type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } }
    case 'JSON':
      // converted_type JSON is added just before the footer is written (see flush): set
      // earlier, the writer would JSON-encode our already encoded text a second time.
      return { ...base, type: 'BYTE_ARRAY', logical_type: { type: 'JSON' } }
    case 'TIMESTAMP':
      return column.utc === false
        ? { ...base, type: 'INT64', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: false, unit: 'MICROS' } }
        : { ...base, type: 'INT64', converted_type: 'TIMESTAMP_MICROS', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' } }
    case 'DATE':
      return { ...base, type: 'INT32', converted_type: 'DATE', logical_type: { type: 'DATE' } }
    case 'DECIMAL': {
      const { precision = 38, scale = 0 } = column
      const type_length = Math.ceil((precision * Math.log2(10) + 1) / 8)
      return {
        ...base,
        type: 'FIXED_LEN_BYTE_ARRAY',
        type_length,
        converted_type: 'DECIMAL',
        precision,
        scale,
        logical_type: { type: 'DECIMAL', precision, scale },
      }
    }
    default:
      return { ...base, type: column.type }
  }
}

const ISO = /^(-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d(?::\d\d)?)?$/
const DECIMAL_TEXT = /^([+-])?(\d*)(?:\.(\d*))?$/

/** A converter from a row value to what the writer stores; throws a message on a misfit. */
export function converter(column: ColumnType): (value: unknown) => unknown {
  switch (column.type) {
    case 'BOOLEAN':
      return (v) => (typeof v === 'boolean' ? v : misfit('a boolean'))
    case 'INT32':
      return (v) => {
        const n = bsonType(v) === 'Int32' ? Number(v) : v
        return typeof n === 'number' && Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 ? n : misfit('a 32-bit integer')
      }
    case 'INT64':
      return (v) => {
        const n =
          typeof v === 'bigint'
            ? v
            : typeof v === 'number' && Number.isSafeInteger(v)
              ? BigInt(v)
              : typeof v === 'string' && /^-?\d+$/.test(v)
                ? BigInt(v)
                : bsonType(v) === 'Long'
                  ? BigInt((v as BsonLike).toString())
                  : undefined
        return n !== undefined && n >= INT64_MIN && n <= INT64_MAX ? n : misfit('a 64-bit integer')
      }
    case 'DOUBLE':
      return (v) => {
        if (typeof v === 'number') return v
        if (bsonType(v) === 'Double' || bsonType(v) === 'Int32') return Number(v)
        return misfit('a number')
      }
    case 'STRING':
      return (v) => {
        if (typeof v === 'string') return v
        const text = typeof v === 'object' && v !== null ? bsonValue(v, 'base64') : undefined
        return typeof text === 'string' ? text : misfit('a string')
      }
    case 'JSON':
      return (v) => encoder.encode(jsonValue(v, 'base64') ?? 'null')
    case 'BYTE_ARRAY':
      return (v) => {
        if (v instanceof Uint8Array) return v
        if (bsonType(v) === 'Binary') return (v as { buffer: Uint8Array; position: number }).buffer.subarray(0, (v as { position: number }).position)
        return misfit('bytes (a Buffer or Uint8Array)')
      }
    case 'TIMESTAMP':
      return (v) => {
        if (v instanceof Date && !Number.isNaN(v.getTime())) return BigInt(v.getTime()) * 1000n
        const m = typeof v === 'string' ? ISO.exec(v) : null
        if (!m) return misfit('a Date or an ISO 8601 timestamp')
        const [, seconds, fraction = '', zone] = m
        const ms = Date.parse(`${seconds}.${fraction.slice(0, 3).padEnd(3, '0')}${zone ?? 'Z'}`)
        if (Number.isNaN(ms)) return misfit('a valid timestamp')
        return BigInt(ms) * 1000n + BigInt(fraction.slice(3, 6).padEnd(3, '0'))
      }
    case 'DATE':
      return (v) => {
        if (v instanceof Date && !Number.isNaN(v.getTime())) return Math.floor(v.getTime() / DAY_MS)
        const ms = typeof v === 'string' && /^\d{4}-\d\d-\d\d$/.test(v) ? Date.parse(`${v}T00:00:00Z`) : Number.NaN
        return Number.isNaN(ms) ? misfit('a Date or a YYYY-MM-DD date') : ms / DAY_MS
      }
    case 'DECIMAL': {
      const { precision = 38, scale = 0 } = column
      return (v) => {
        const text = typeof v === 'string' ? v : typeof v === 'bigint' || typeof v === 'number' || bsonType(v) === 'Decimal128' ? String(v) : undefined
        const m = text === undefined ? null : DECIMAL_TEXT.exec(text)
        if (!m || (m[2] === '' && (m[3] ?? '') === '')) return misfit(`a decimal(${precision},${scale})`)
        const [, sign = '', whole, fraction = ''] = m
        const kept = fraction.replace(/0+$/, '')
        if (kept.length > scale) return misfit(`at most ${scale} digits after the point (decimal(${precision},${scale}))`)
        const digits = (whole + fraction.padEnd(scale, '0').slice(0, scale)).replace(/^0+(?=\d)/, '')
        if (digits.length > precision) return misfit(`at most ${precision} digits (decimal(${precision},${scale}))`)
        return BigInt(sign + digits)
      }
    }
  }
}

/** About the bytes a row's values take in a file: their text or binary length, 8 for numbers. */
export function roughSize(row: Row, keys: string[]): number {
  let size = 0
  for (const key of keys) {
    const value = row[key]
    size += typeof value === 'string' ? value.length : value instanceof Uint8Array ? value.length : 8
  }
  return size
}

export class Misfit extends Error {}
function misfit(expected: string): never {
  throw new Misfit(expected)
}

/** Column type inferred from the first non-null value of a column. */
export function inferType(name: string, values: unknown[]): ColumnType {
  const v = values.find((x) => x !== null && x !== undefined)
  const type = ((): ColumnType['type'] => {
    if (typeof v === 'string') return 'STRING'
    if (typeof v === 'number') return 'DOUBLE'
    if (typeof v === 'bigint') return 'INT64'
    if (typeof v === 'boolean') return 'BOOLEAN'
    if (v instanceof Date) return 'TIMESTAMP'
    if (v instanceof Uint8Array) return 'BYTE_ARRAY'
    switch (bsonType(v)) {
      case 'Long':
        return 'INT64'
      case 'Int32':
        return 'INT32'
      case 'Double':
        return 'DOUBLE'
      case 'Binary':
        return (v as { sub_type?: number }).sub_type === 4 ? 'STRING' : 'BYTE_ARRAY'
      case 'ObjectId':
      case 'Decimal128':
        return 'STRING' // exact text: a Decimal128 has no fixed precision and scale
    }
    return v === undefined ? 'STRING' : 'JSON'
  })()
  return { name, type }
}

export function fitError(row: number, column: ColumnType, value: unknown, expected: string): ExportError {
  return new ExportError(
    'ERR_FORMAT',
    'format',
    `Row ${row}, column ${JSON.stringify(column.name)} (${column.type}): expected ${expected}, got ${describe(value)}`,
  )
}
