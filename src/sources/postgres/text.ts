// CSV and JSON Lines written by PostgreSQL itself, byte for byte what csv() and jsonl() write from
// the same rows: per-column expressions that print each value as the row path does
// (docs/postgres.md), in COPY's CSV output (its quoting is RFC 4180's, as ours) or, for JSON
// Lines, one text per row in COPY's binary framing. Where identity cannot be guaranteed,
// `copyRefusal` says why and the rows go through the row path.
import pg from 'pg'
import { encodedRows, type EncodedRows, type TextEncoding } from '../../core/types.js'

type CsvEncoding = Extract<TextEncoding, { kind: 'csv' }>
import type { PgField } from './types.js'

// The types PostgreSQL prints as the row path writes them, one list per kind; the sets below are made of them.
const BOOL = 16
const NUMBERS = [20, 21, 23, 26, 1700] // int8, int2, int4, oid, numeric: never formula-escaped
const TEXTS = [25, 1043, 1042, 19, 18] // text, varchar, char(n), name, "char": any character
const TEXT_KEPT = [2950, 1082, 1083, 1266, 1186] // uuid, date, time, timetz, interval: the row path keeps their text
const TIMESTAMP_TYPES = [1114, 1184]
const BYTEA = 17

const AS_TEXT = new Set([BOOL, ...NUMBERS, ...TEXTS, ...TEXT_KEPT])
const TIMESTAMPS = new Set(TIMESTAMP_TYPES)
const JSON_LITERAL = new Set([BOOL, 21, 23, 26]) // JSON booleans and numbers (int8, numeric are strings)
// Values the row path reads as strings, which `escapeFormulas` applies to (numbers by type excepted).
const STRINGS = new Set([...TEXTS, ...TEXT_KEPT, ...TIMESTAMP_TYPES])
// Text types need JSON escapes; with bytea, they are the values that can be empty (COPY would quote them).
const TEXT = new Set(TEXTS)
const MAY_BE_EMPTY = new Set([...TEXTS, BYTEA])

/** A one-byte character COPY accepts as a CSV delimiter or quote. */
const copyChar = (text: string) => (text === '\t' || (text.length === 1 && text >= ' ' && text <= '~')) && !/[A-Za-z0-9\\.]/.test(text)

/** Whether the text of these columns depends on the session's DateStyle (timestamps). */
export const dependsOnDateStyle = (fields: readonly PgField[]): boolean => fields.some((f) => TIMESTAMPS.has(f.dataTypeID))

/** Why the row path must write this export, or undefined when COPY writes the same bytes (`dateStyle`: when it matters). */
export function copyRefusal(fields: readonly PgField[], encoding: TextEncoding, dateStyle?: string): string | undefined {
  const other = fields.find((f) => !AS_TEXT.has(f.dataTypeID) && !TIMESTAMPS.has(f.dataTypeID) && f.dataTypeID !== BYTEA)
  if (other) return `column ${JSON.stringify(other.name)} of type oid ${other.dataTypeID}`
  if (dateStyle !== undefined && !dateStyle.startsWith('ISO')) return `DateStyle ${dateStyle}`
  return encoding.kind === 'csv' ? csvRefusal(fields, encoding) : undefined
}

function csvRefusal(fields: readonly PgField[], encoding: CsvEncoding): string | undefined {
  const { delimiter, quote, eol, nullValue } = encoding
  if (!copyChar(delimiter) || !copyChar(quote) || delimiter === quote) return 'a delimiter or quote COPY cannot write'
  if (eol !== '\n' && eol !== '\r\n') return 'a record delimiter other than LF or CRLF'
  // COPY quotes an empty string to tell it from NULL; the row path writes both as `nullValue`.
  if (nullValue !== '') return 'a nullValue other than the empty string'
  // COPY quotes a lone `\.` in a one-column row (its end-of-data marker in text mode).
  if (fields.length < 2) return 'a single column'
  return undefined
}

/** The text of column `n` (1-based) as the row path has it (a string, or a number's or boolean's text). */
function valueSql(field: PgField, c: string, binary: TextEncoding['binary']): string {
  if (TIMESTAMPS.has(field.dataTypeID)) {
    // The row path turns Postgres' ISO text into ISO 8601 (`T`, `+00:00`), which is to_json's; BC
    // dates and -infinity it leaves as they are.
    return `CASE WHEN ${c} < '0001-01-01' THEN ${c}::text ELSE btrim(to_json(${c})::text, '"') END`
  }
  if (field.dataTypeID === BYTEA) return binary === 'hex' ? `encode(${c}, 'hex')` : `translate(encode(${c}, 'base64'), E'\\n', '')`
  // char(n) keeps its padding, as Postgres prints it (a cast to text drops it); format() makes '' of NULL.
  if (field.dataTypeID === 1042) return `CASE WHEN ${c} IS NOT NULL THEN format('%s', ${c}) END`
  return `${c}::text`
}

/** The SQL text of one CSV cell of column `n` (1-based); NULL stays NULL. */
function cellSql(field: PgField, n: number, encoding: CsvEncoding): string {
  const c = `q."${n}"`
  let text = valueSql(field, c, encoding.binary)
  if (encoding.escapeFormulas && STRINGS.has(field.dataTypeID)) {
    text = `CASE WHEN left(${text}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') THEN '''' || ${text} ELSE ${text} END`
  }
  // COPY writes "" for an empty string; csv() writes it bare, as it writes NULL (nullValue '').
  return MAY_BE_EMPTY.has(field.dataTypeID) ? `NULLIF(${text}, '')` : text
}

/** The JSON text of column `n` as jsonl() writes it (strings quoted and escaped; int8 and numeric as strings). */
function jsonSql(field: PgField, n: number, binary: TextEncoding['binary']): string {
  const c = `q."${n}"`
  const id = field.dataTypeID
  let json: string
  if (JSON_LITERAL.has(id))
    json = `${c}::text` // int2, int4, oid, bool: JSON numbers and booleans
  else if (TIMESTAMPS.has(id)) json = `(CASE WHEN ${c} < '0001-01-01' THEN to_json(${c}::text) ELSE to_json(${c}) END)::text`
  else if (TEXT.has(id))
    json = `to_json(${valueSql(field, c, binary)})::text` // escaped as JSON.stringify escapes
  else json = `'"' || ${valueSql(field, c, binary)} || '"'` // numbers, dates, times, uuid, base64/hex: nothing to escape
  return `COALESCE(${json}, 'null')`
}

/** `COPY (...) TO STDOUT` writing the rows of `query` as the format would (a CSV header aside). */
export function copyQuery(query: string, fields: readonly PgField[], names: readonly string[], encoding: TextEncoding): string {
  const columns = fields.map((_, i) => `"${i + 1}"`).join(', ')
  const from = `FROM (${query}) AS q(${columns})`
  if (encoding.kind === 'jsonl') {
    const members = fields.map(
      (field, i) => `${pg.escapeLiteral(`${i > 0 ? ',' : '{'}${JSON.stringify(names[i])}:`)} || ${jsonSql(field, i + 1, encoding.binary)}`,
    )
    return `COPY (SELECT ${members.join(' || ')} || '}' ${from}) TO STDOUT WITH (FORMAT binary)`
  }
  const cells = fields.map((field, i) => cellSql(field, i + 1, encoding)).join(', ')
  const options = `FORMAT csv, DELIMITER ${pg.escapeLiteral(encoding.delimiter)}, QUOTE ${pg.escapeLiteral(encoding.quote)}`
  return `COPY (SELECT ${cells} ${from}) TO STDOUT WITH (${options})`
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

  constructor(encoding: CsvEncoding) {
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
    if (!this.#crlf || ends.length === 0) return encodedRows(ends.length, chunk)
    const bytes = Buffer.allocUnsafe(chunk.length + ends.length)
    let to = 0
    let from = 0
    for (const end of ends) {
      to += chunk.copy(bytes, to, from, end)
      bytes[to++] = CR
      from = end
    }
    chunk.copy(bytes, to, from)
    return encodedRows(ends.length, bytes)
  }
}

const NEWLINE = Buffer.from('\n')
const HEADER = 19 // PGCOPY\n\xff\r\n\0, flags, header extension length

/**
 * The rows of a one-column COPY in binary format as lines: each row's text and a LF, the framing
 * (header, field counts and lengths, trailer) dropped.
 */
export class BinaryLines {
  #carry: Buffer = Buffer.alloc(0)
  #body = false
  #ended = false

  /** Bytes not read as whole rows (at least 1 until the trailer has come): 0 once the output is whole. */
  get pending(): number {
    return this.#ended ? this.#carry.length : Math.max(1, this.#carry.length)
  }

  push(chunk: Buffer): EncodedRows {
    const data = this.#carry.length > 0 ? Buffer.concat([this.#carry, chunk]) : chunk
    let at = 0
    if (!this.#body) {
      if (data.length < HEADER || data.length < HEADER + data.readUInt32BE(HEADER - 4)) {
        this.#carry = data
        return encodedRows(0, Buffer.alloc(0))
      }
      at = HEADER + data.readUInt32BE(HEADER - 4)
      this.#body = true
    }
    const lines: Buffer[] = []
    while (!this.#ended && data.length - at >= 2) {
      if (data.readInt16BE(at) === -1) {
        this.#ended = true
        at += 2
        break
      }
      if (data.length - at < 6) break
      const length = data.readInt32BE(at + 2)
      if (data.length - at < 6 + length) break
      lines.push(data.subarray(at + 6, at + 6 + length), NEWLINE)
      at += 6 + length
    }
    this.#carry = data.subarray(at)
    return encodedRows(lines.length / 2, Buffer.concat(lines))
  }
}
