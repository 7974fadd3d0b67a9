import { parse as parseArray } from 'postgres-array'
import pg from 'pg'
import type { ColumnType } from '../../core/types.js'

// Type parsers for lossless output, passed per query (the caller's global pg.types stay untouched).
// pg's defaults already keep int8 and numeric as strings and bytea as Buffer; these fix the rest:
// - timestamp/timestamptz: pg makes a JS Date (milliseconds: microseconds lost) -> ISO 8601 text
//   with the offset Postgres gave, e.g. 2026-02-01T00:00:00.123456+00:00.
// - date: pg makes a Date at local midnight (shifts by the TZ) -> the date text as is.
// - numeric[]: pg parses as floats -> strings. interval: text as Postgres prints it.

const TIMESTAMP = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)(?:([+-]\d\d)(?::?(\d\d))?(?::?(\d\d))?)?$/

/** `2026-02-01 10:00:00.5+01` -> `2026-02-01T10:00:00.5+01:00`; anything else (infinity, BC) as is. */
export function isoTimestamp(text: string): string {
  const m = TIMESTAMP.exec(text)
  if (!m) return text
  const [, date, time, hours, minutes = '00', seconds] = m
  if (hours === undefined) return `${date}T${time}`
  return `${date}T${time}${hours}:${minutes}${seconds ? `:${seconds}` : ''}`
}

const identity = (text: string) => text
const arrayOf = (item: (text: string) => unknown) => (text: string) => parseArray(text, item)

const OVERRIDES: Record<number, (text: string) => unknown> = {
  1114: isoTimestamp, // timestamp
  1184: isoTimestamp, // timestamptz
  1082: identity, // date
  1186: identity, // interval
  1115: arrayOf(isoTimestamp), // timestamp[]
  1185: arrayOf(isoTimestamp), // timestamptz[]
  1182: arrayOf(identity), // date[]
  1187: arrayOf(identity), // interval[]
  1231: arrayOf(identity), // numeric[]
}

type TypeParser = (text: string) => unknown

/** The `types` option for pg queries made by the Postgres sources. */
export function losslessTypes(): { getTypeParser(oid: number, format?: string): TypeParser } {
  const { types } = pg
  return {
    getTypeParser(oid: number, format?: string): TypeParser {
      if (format !== 'binary' && OVERRIDES[oid]) return OVERRIDES[oid]
      return types.getTypeParser(oid, (format ?? 'text') as 'text') as TypeParser
    },
  }
}

/** A field of a pg RowDescription. */
export interface PgField {
  name: string
  dataTypeID: number
  dataTypeModifier: number
}

const ARRAY_OIDS = new Set([1000, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 1115, 1182, 1183, 1185, 1187, 1231, 1270, 2951, 199, 3807])

/**
 * The column type of a Postgres field, for typed formats (Parquet): int8 -> INT64,
 * numeric(p,s) -> DECIMAL(p,s) (unconstrained numeric -> exact STRING), timestamptz -> UTC
 * TIMESTAMP, timestamp -> wall-clock TIMESTAMP, date -> DATE, json/jsonb/arrays -> JSON,
 * bytea -> BYTE_ARRAY, anything else -> STRING. All nullable: a row description has no NOT NULL.
 */
export function pgColumnType({ name, dataTypeID, dataTypeModifier }: PgField): ColumnType {
  switch (dataTypeID) {
    case 16:
      return { name, type: 'BOOLEAN' }
    case 20:
      return { name, type: 'INT64' }
    case 21:
    case 23:
      return { name, type: 'INT32' }
    case 700:
    case 701:
      return { name, type: 'DOUBLE' }
    case 1700:
      if (dataTypeModifier < 4) return { name, type: 'STRING', numeric: true }
      return { name, type: 'DECIMAL', precision: ((dataTypeModifier - 4) >> 16) & 0xffff, scale: (dataTypeModifier - 4) & 0xffff }
    case 1184:
      return { name, type: 'TIMESTAMP' }
    case 1114:
      return { name, type: 'TIMESTAMP', utc: false }
    case 1082:
      return { name, type: 'DATE' }
    case 17:
      return { name, type: 'BYTE_ARRAY' }
    case 114:
    case 3802:
      return { name, type: 'JSON' }
    default:
      return { name, type: ARRAY_OIDS.has(dataTypeID) ? 'JSON' : 'STRING' }
  }
}
