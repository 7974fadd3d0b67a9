// Cell values in SpreadsheetML: text escaped for XML and OOXML, Excel's date serials, the numbers
// Excel holds exactly (JS numbers and number text), what a column holds by its source type, and
// column letters.
import { isNumberColumn } from '../values.js'
import type { ColumnType } from '../../core/types.js'

const XML_SPECIAL = /[&<>]/g
const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' }
// What XML 1.0 cannot hold (controls other than TAB and LF, lone surrogates, U+FFFE/U+FFFF), CR
// (an XML parser turns it into LF), and text that already looks like an escape (`_x0041_`, which
// Excel would decode): written as OOXML's `_xHHHH_` escapes, which Excel reads back as the
// original character. Nothing is dropped.
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const NEEDS_OOXML_ESCAPE = /[\0-\x08\x0B-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|_x[0-9A-Fa-f]{4}_/g
const hex4 = (code: number) => code.toString(16).toUpperCase().padStart(4, '0')
const ooxmlEscape = (match: string) => (match.length === 1 ? `_x${hex4(match.charCodeAt(0))}_` : `_x005F${match}`)

/** Text content for SpreadsheetML: XML-escaped, with OOXML escapes for what XML cannot carry. */
export function xmlText(text: string): string {
  return text.replace(NEEDS_OOXML_ESCAPE, ooxmlEscape).replace(XML_SPECIAL, (c) => XML_ESCAPES[c]!)
}

export const attribute = (text: string) => xmlText(text).replace(/"/g, '&quot;')

// The serial number of a date: days since 1899-12-30 (Excel's 1900 date system, whose day 60 is
// the 29 February 1900 that never was: serials are right from 1 March 1900 on).
const EXCEL_EPOCH_MS = Date.UTC(1899, 11, 30)
const FIRST_SERIAL_MS = Date.UTC(1900, 2, 1)
const LAST_SERIAL_MS = Date.UTC(10000, 0, 1)
const DAY_MS = 86_400_000

/** The serial of a UTC instant, or undefined outside what Excel's dates hold (1 March 1900 to 9999). */
export function serialOf(ms: number): number | undefined {
  if (ms < FIRST_SERIAL_MS || ms >= LAST_SERIAL_MS) return undefined
  return (ms - EXCEL_EPOCH_MS) / DAY_MS
}

// Postgres timestamps as the sources give them (isoTimestamp): date, time with up to 6 fractional
// digits, and for timestamptz the offset.
const PG_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([+-])(\d{2}):(\d{2})(?::(\d{2}))?)?)?$/

/** The serial of a Postgres date or timestamp text (microseconds kept as far as a double holds them), or undefined. */
export function pgSerial(text: string): number | undefined {
  const m = PG_TIMESTAMP.exec(text)
  if (!m || Number(m[1]) < 1900) return undefined // infinity, BC dates, years before Excel's
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', sign, oh = '0', om = '0', os = '0'] = m
  const offsetMs = sign ? (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os)) * 1000 : 0
  const dayMs = Date.UTC(Number(y), Number(mo) - 1, Number(d))
  const timeMs = (Number(h) * 3600 + Number(mi) * 60 + Number(s)) * 1000 - offsetMs
  const at = dayMs + timeMs
  if (serialOf(at) === undefined) return undefined
  return (dayMs - EXCEL_EPOCH_MS) / DAY_MS + (timeMs + (fraction ? Number(fraction) * 1000 : 0)) / DAY_MS
}

// A decimal number in text: sign, digits, fraction, exponent.
export const DECIMAL = /^[+-]?(\d+)(?:\.(\d*))?(?:[eE][+-]?\d+)?$/

// Excel keeps 15 significant digits of a number: more would be cut.
const EXCEL_DIGITS = 15

/** Significant digits of a match of DECIMAL (`1.25e+25`: 3; `0.00012`: 2; `1200`: 2). */
const significantDigits = (m: RegExpExecArray) => `${m[1]}${m[2] ?? ''}`.replace(/^0+/, '').replace(/0+$/, '').length

/** The text of a number Excel holds exactly (at most 15 significant digits), as `<v>` takes it; else undefined. */
export function exactNumberText(text: string): string | undefined {
  const m = DECIMAL.exec(text)
  if (!m || significantDigits(m) > EXCEL_DIGITS) return undefined
  const value = Number(text)
  return Number.isFinite(value) ? text.replace(/^\+/, '') : undefined
}

/**
 * Whether Excel holds a finite JS number to the digit, given its shortest round-trip text
 * (`String(n)`): at most 15 significant digits (9007199254740991 has 16, 0.1 + 0.2 has 17).
 */
export function excelHoldsNumber(text: string): boolean {
  if (text.length <= EXCEL_DIGITS) return true // too short to hold 16 digits: most numbers stop here
  const m = DECIMAL.exec(text)
  return m !== null && significantDigits(m) <= EXCEL_DIGITS
}

/** What a column holds by its source type: Postgres timestamps and dates become Excel dates, numbers by type become numbers. */
export type ColumnKind = 'plain' | 'number' | 'timestamp' | 'date'
export const kindOf = (type: ColumnType | undefined): ColumnKind =>
  type?.type === 'TIMESTAMP' ? 'timestamp' : type?.type === 'DATE' ? 'date' : isNumberColumn(type) ? 'number' : 'plain'

/** `<t>` of an inline string, keeping leading and trailing spaces and line breaks. */
export function inline(text: string): string {
  const preserve = /^\s|\s$|\n/.test(text)
  return preserve ? `<t xml:space="preserve">${xmlText(text)}</t>` : `<t>${xmlText(text)}</t>`
}

/** Column letters of a 0-based index: A, B, ..., Z, AA, ... */
export function columnLetters(index: number): string {
  let letters = ''
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) letters = String.fromCharCode(65 + ((n - 1) % 26)) + letters
  return letters
}
