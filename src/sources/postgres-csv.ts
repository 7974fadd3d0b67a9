// CSV written by PostgreSQL itself, byte for byte what csv() writes from the same rows: COPY's CSV
// output (its quoting is RFC 4180's, as ours) of per-column expressions that print each value as
// the row path does (docs/postgres.md). Where that cannot be guaranteed, `copyCsvQuery` says no and
// the rows go through the row path.
import pg from 'pg'
import type { EncodedRows, TextEncoding } from '../types.js'
import type { PgField } from './postgres-types.js'

const NUMBER = new Set([20, 21, 23, 26, 1700]) // int8, int2, int4, oid, numeric: never formula-escaped
// Text Postgres prints as the row path writes it: bool (true/false), numbers, text types, uuid,
// date/time/interval (the row path keeps their text).
const AS_TEXT = new Set([16, ...NUMBER, 25, 1043, 1042, 19, 18, 2950, 1082, 1083, 1266, 1186])
const TIMESTAMPS = new Set([1114, 1184])
const BYTEA = 17
// Values the row path reads as strings, which `escapeFormulas` applies to (numbers by type excepted).
const STRINGS = new Set([25, 1043, 1042, 19, 18, 2950, 1082, 1083, 1266, 1186, 1114, 1184])
// Types whose text can be empty (text types, bytea): COPY would quote an empty value.
const MAY_BE_EMPTY = new Set([25, 1043, 1042, 19, 18, BYTEA])

/** A one-byte character COPY accepts as a CSV delimiter or quote. */
const copyChar = (text: string) => (text === '\t' || (text.length === 1 && text >= ' ' && text <= '~')) && !/[A-Za-z0-9\\.]/.test(text)

/** Why the row path must write this export, or undefined when COPY writes the same bytes. */
export function copyCsvRefusal(fields: readonly PgField[], encoding: TextEncoding, dateStyle: string): string | undefined {
  const { delimiter, quote, eol, nullValue } = encoding
  if (!copyChar(delimiter) || !copyChar(quote) || delimiter === quote) return 'a delimiter or quote COPY cannot write'
  if (eol !== '\n' && eol !== '\r\n') return 'a record delimiter other than LF or CRLF'
  // COPY quotes an empty string to tell it from NULL; the row path writes both as `nullValue`.
  if (nullValue !== '') return 'a nullValue other than the empty string'
  // COPY quotes a lone `\.` in a one-column row (its end-of-data marker in text mode).
  if (fields.length < 2) return 'a single column'
  const other = fields.find((f) => !AS_TEXT.has(f.dataTypeID) && !TIMESTAMPS.has(f.dataTypeID) && f.dataTypeID !== BYTEA)
  if (other) return `column ${JSON.stringify(other.name)} of type oid ${other.dataTypeID}`
  if (fields.some((f) => TIMESTAMPS.has(f.dataTypeID)) && !dateStyle.startsWith('ISO')) return `DateStyle ${dateStyle}`
  return undefined
}

/** The SQL text of one cell of column `n` (1-based), as the row path prints it; NULL stays NULL. */
function cellSql(field: PgField, n: number, encoding: TextEncoding): string {
  const c = `q."${n}"`
  let text: string
  if (TIMESTAMPS.has(field.dataTypeID)) {
    // The row path turns Postgres' ISO text into ISO 8601 (`T`, `+00:00`), which is to_json's; BC
    // dates and -infinity it leaves as they are.
    text = `CASE WHEN ${c} < '0001-01-01' THEN ${c}::text ELSE btrim(to_json(${c})::text, '"') END`
  } else if (field.dataTypeID === BYTEA) {
    text = encoding.binary === 'hex' ? `encode(${c}, 'hex')` : `translate(encode(${c}, 'base64'), E'\\n', '')`
  } else if (field.dataTypeID === 1042) {
    text = `format('%s', ${c})` // char(n) keeps its padding, as Postgres prints it (a cast to text drops it)
  } else {
    text = `${c}::text`
  }
  if (encoding.escapeFormulas && STRINGS.has(field.dataTypeID)) {
    text = `CASE WHEN left(${text}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') THEN '''' || ${text} ELSE ${text} END`
  }
  // COPY writes "" for an empty string; csv() writes it bare, as it writes NULL (nullValue '').
  return MAY_BE_EMPTY.has(field.dataTypeID) ? `NULLIF(${text}, '')` : text
}

/** `COPY (...) TO STDOUT` writing the rows of `query` as csv() would, without the header. */
export function copyCsvQuery(query: string, fields: readonly PgField[], encoding: TextEncoding): string {
  const cells = fields.map((field, i) => cellSql(field, i + 1, encoding)).join(', ')
  const names = fields.map((_, i) => `"${i + 1}"`).join(', ')
  const options = `FORMAT csv, DELIMITER ${pg.escapeLiteral(encoding.delimiter)}, QUOTE ${pg.escapeLiteral(encoding.quote)}`
  return `COPY (SELECT ${cells} FROM (${query}) AS q(${names})) TO STDOUT WITH (${options})`
}

const LF = 0x0a
const CR = 0x0d

/**
 * Counts the records of COPY's CSV output as it passes (a record ends at a LF outside quotes), and
 * with `eol: '\r\n'` puts a CR before each record's LF (COPY ends records with LF; line breaks
 * inside quoted cells stay as they are). Chunks pass on as they came otherwise: no copy.
 */
export class CsvRecords {
  #quote: number
  #crlf: boolean
  #quoted = false
  #pending = 0

  constructor(encoding: TextEncoding) {
    this.#quote = encoding.quote.charCodeAt(0)
    this.#crlf = encoding.eol === '\r\n'
  }

  /** Bytes after the last record end: 0 once the output is whole. */
  get pending(): number {
    return this.#pending
  }

  /** `chunk` (CRLF records with `eol: '\r\n'`) and the count of records that end in it. */
  push(chunk: Buffer): EncodedRows {
    const ends: number[] = []
    let quoted = this.#quoted
    let nextQuote = chunk.indexOf(this.#quote)
    for (let lf = chunk.indexOf(LF); lf !== -1; lf = chunk.indexOf(LF, lf + 1)) {
      while (nextQuote !== -1 && nextQuote < lf) {
        quoted = !quoted
        nextQuote = chunk.indexOf(this.#quote, nextQuote + 1)
      }
      if (!quoted) ends.push(lf)
    }
    for (; nextQuote !== -1; nextQuote = chunk.indexOf(this.#quote, nextQuote + 1)) quoted = !quoted
    this.#quoted = quoted
    this.#pending = ends.length === 0 ? this.#pending + chunk.length : chunk.length - ends.at(-1)! - 1
    if (!this.#crlf || ends.length === 0) return { encodedRows: ends.length, bytes: chunk }
    const bytes = Buffer.allocUnsafe(chunk.length + ends.length)
    let to = 0
    let from = 0
    for (const end of ends) {
      to += chunk.copy(bytes, to, from, end)
      bytes[to++] = CR
      from = end
    }
    chunk.copy(bytes, to, from)
    return { encodedRows: ends.length, bytes }
  }
}
