// CSV records from UTF-8 bytes, as csv-parse reads them with csvSource's options (RFC 4180 quotes,
// the record delimiter discovered from the first line break: \r\n, \n or \r, empty lines skipped)
// and failing as it fails: the same error codes, messages and line numbers. A line without quotes
// is found with indexOf, decoded once and split(); only a record with quotes is read field by field.
// Every string is decoded from the bytes of its own line or field: a cell kept (a partition key,
// a checkpoint, Parquet statistics) keeps at most its line alive, never the chunk it came in.
// test/sources/csv-reader.test.ts holds it to csv-parse (csv-spectrum's vectors and a fuzzer).

const QUOTE = 0x22
const CR = 0x0d
const LF = 0x0a

/** A syntax error, shaped as csv-parse's (`code`, `lines`): csvSource words both alike. */
export class CsvSyntaxError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly lines: number,
  ) {
    super(message)
  }
}

/** A record's fields (null: an unquoted empty field, with `emptyNull`) and csv-parse's line number at its end. */
export type OnRecord = (fields: Array<string | null>, line: number) => void

/** What a record attempt gives: the record (or none: an empty line), where the next starts and its line. */
interface Step {
  fields: Array<string | null> | undefined
  line: number
  next: number
  lines: number
}

// What #next finds: the delimiter, a quote, CR, LF.
const DELIMITER_AT = 0
const QUOTE_AT = 1
const CR_AT = 2
const LF_AT = 3

const isBreak = (byte: number) => byte === CR || byte === LF

/** Line breaks (each CR and each LF, as csv-parse counts lines) in `bytes` from `from` to `to`. */
function breaks(bytes: Buffer, from: number, to: number): number {
  let n = 0
  for (let i = from; i < to; i++) if (isBreak(bytes[i]!)) n++
  return n
}

const EMPTY: Buffer = Buffer.alloc(0)
/** The byte order marks csv-parse knows. */
export const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf])
export const UTF16LE_BOM = Buffer.from([0xff, 0xfe])

/**
 * Bytes of clean lines decoded at once: fewer calls into the decoder, while a cell kept keeps at
 * most this much text alive (a slice holds its whole string).
 */
const BLOCK = 4096

/**
 * Records from UTF-8 bytes given in pieces (`push`, then `end`). `column(i)` names field `i` in
 * an error (csv-parse's `info.column`: the header's name once known, else the index).
 */
export class CsvTokenizer {
  readonly #delimiter: Buffer
  readonly #text: string // the delimiter, to split decoded lines with
  readonly #emptyNull: boolean
  readonly #lookahead: number
  #rd: Buffer = EMPTY // the record delimiter, once discovered
  #bytes: Buffer = EMPTY // bytes not parsed yet, from the start of a record
  #pending: Buffer[] = [] // bytes received since, joined to them at the next attempt
  #pendingLength = 0
  #lines = 1 // csv-parse's line number at the start of #bytes
  #waitFor = 0 // an incomplete record waits until the bytes double (linear time for a huge field)
  // The next delimiter, quote, CR and LF found in the bytes being parsed (-1: not looked for yet;
  // their length: none): each is searched for again only once passed, so no byte is scanned twice.
  #found = [-1, -1, -1, -1]
  column: (index: number) => string | number | null = (index) => index
  /**
   * Offered each block of clean LF lines (`bytes` from `from` to `to`, its last LF included)
   * before it is split into records: returns how many records it took them as (every line, or 0
   * to leave them to `onRecord`). csvSource passes such lines on as they are (see CsvReader.encodeFor).
   */
  passLines: ((bytes: Buffer, from: number, to: number) => number) | undefined

  constructor(delimiter: string, emptyNull: boolean) {
    this.#delimiter = Buffer.from(delimiter)
    this.#text = delimiter
    this.#emptyNull = emptyNull
    this.#lookahead = Math.max(this.#delimiter.length, 2)
  }

  push(bytes: Buffer, onRecord: OnRecord): void {
    if (bytes.length === 0) return
    this.#pending.push(bytes)
    this.#pendingLength += bytes.length
    if (this.#bytes.length + this.#pendingLength >= this.#waitFor) this.#parse(false, onRecord)
  }

  end(onRecord: OnRecord): void {
    this.#parse(true, onRecord)
    this.#bytes = EMPTY
  }

  #parse(final: boolean, onRecord: OnRecord): void {
    // (Joined here, not at each push: a huge field is copied a bounded number of times.)
    const pending = this.#pending
    if (pending.length > 0) {
      this.#bytes = this.#bytes.length === 0 && pending.length === 1 ? pending[0]! : Buffer.concat([this.#bytes, ...pending])
      this.#pending = []
      this.#pendingLength = 0
    }
    const bytes = this.#bytes
    const len = bytes.length
    let pos = 0
    let lines = this.#lines
    this.#found = [-1, -1, -1, -1]
    while (pos < len) {
      const rd = this.#rd
      if (rd.length === 1 && rd[0] === LF) {
        // LF lines: the clean ones ahead (no quote, no CR), up to BLOCK bytes, decoded at once.
        const limit = Math.min(this.#next(bytes, QUOTE_AT, pos), this.#next(bytes, CR_AT, pos), pos + BLOCK)
        const last = limit > pos ? bytes.lastIndexOf(LF, limit - 1) : -1
        if (last >= pos) {
          const passed = this.passLines?.(bytes, pos, last + 1) ?? 0
          lines = passed > 0 ? lines + passed : this.#block(bytes.toString('utf8', pos, last), lines, onRecord)
          pos = last + 1
          continue
        }
      }
      const step = this.#record(bytes, pos, lines, final)
      if (step === undefined) break
      if (step.fields) onRecord(step.fields, step.line)
      pos = step.next
      lines = step.lines
    }
    this.#bytes = pos === len ? EMPTY : bytes.subarray(pos)
    this.#lines = lines
    this.#waitFor = this.#bytes.length * 2
  }

  /** The records of a block of clean LF lines (its last LF left out); the line number after them. */
  #block(block: string, lines: number, onRecord: OnRecord): number {
    for (let i = 0; ; lines++) {
      const j = block.indexOf('\n', i)
      const end = j === -1 ? block.length : j
      if (end > i) onRecord(this.#split(block.slice(i, end)), lines)
      if (j === -1) return lines + 1
      i = j + 1
    }
  }

  /** Unquoted fields, decoded together: split at the delimiter, an empty one null with emptyNull. */
  #split(text: string): Array<string | null> {
    const fields: Array<string | null> = text.split(this.#text)
    if (this.#emptyNull) for (let i = 0; i < fields.length; i++) if (fields[i] === '') fields[i] = null
    return fields
  }

  /** One record from `pos`, field by field; undefined when the bytes end before it does (and more may come). */
  #record(bytes: Buffer, pos: number, lines: number, final: boolean): Step | undefined {
    const len = bytes.length
    const fields: Array<string | null> = []
    let p = pos
    let ln = lines
    const more = (at: number) => !final && len - at < this.#lookahead
    for (;;) {
      if (p < len && bytes[p] === QUOTE) {
        // A quoted field: to the closing quote ("" is a quote).
        let value = ''
        let q = p + 1
        for (;;) {
          const j = bytes.indexOf(QUOTE, q)
          if (j === -1) {
            if (!final) return undefined
            ln += breaks(bytes, q, len - 1) // (a break at the very end is not counted yet)
            throw new CsvSyntaxError('CSV_QUOTE_NOT_CLOSED', `Quote Not Closed: the parsing is finished with an opening quote at line ${ln}`, ln)
          }
          ln += breaks(bytes, q, j)
          value += bytes.toString('utf8', q, j)
          if (more(j + 1)) return undefined
          if (j + 1 === len) {
            fields.push(value)
            return { fields, line: ln, next: len, lines: ln }
          }
          if (bytes[j + 1] === QUOTE) {
            value += '"'
            q = j + 2
            continue
          }
          if (this.#delimiterAt(bytes, j + 1)) {
            fields.push(value)
            p = j + 1 + this.#delimiter.length
            break
          }
          const rd = this.#recordDelimiterAt(bytes, j + 1)
          if (rd > 0) {
            fields.push(value)
            return { fields, line: ln, next: j + 1 + rd, lines: ln + 1 }
          }
          throw new CsvSyntaxError(
            'CSV_INVALID_CLOSING_QUOTE',
            `Invalid Closing Quote: got "${String.fromCharCode(bytes[j + 1]!)}" at line ${ln} instead of delimiter, record delimiter, trimable character (if activated) or comment`,
            ln,
          )
        }
        continue
      }
      // Unquoted fields up to the next quote or record delimiter (a whole line without quotes): decoded at once and split.
      const stop = Math.min(this.#next(bytes, QUOTE_AT, p), this.#next(bytes, CR_AT, p), this.#next(bytes, LF_AT, p))
      if (stop > p && stop < len) {
        const quoted = bytes[stop] === QUOTE
        if (!quoted && more(stop)) return undefined
        const rd = quoted ? 0 : this.#recordDelimiterAt(bytes, stop)
        const pieces = quoted || rd > 0 ? this.#split(bytes.toString('utf8', p, stop)) : undefined
        // (Before a quote the last piece must be empty, the quoted field's start; if not, the error comes field by field below.)
        if (pieces && (rd > 0 || !pieces.at(-1))) {
          const count = rd > 0 ? pieces.length : pieces.length - 1
          for (let i = 0; i < count; i++) fields.push(pieces[i]!)
          if (rd > 0) return { fields, line: ln, next: stop + rd, lines: ln + 1 }
          p = stop
          continue
        }
      }
      // An unquoted field with a line break in it (not the record delimiter), or at the end: field by field.
      let s = p
      for (;;) {
        const k = this.#special(bytes, s)
        if (k === len) {
          if (!final) return undefined
          if (fields.length === 0 && k === p) return { fields: undefined, line: ln, next: len, lines: ln }
          fields.push(this.#unquoted(bytes, p, len))
          // (A break at the very end is not counted yet.)
          const line = len > p && isBreak(bytes[len - 1]!) ? ln - 1 : ln
          return { fields, line, next: len, lines: ln }
        }
        const byte = bytes[k]!
        if (byte === QUOTE) throw this.#openingQuote(fields.length, bytes, p, k, ln)
        if (!isBreak(byte)) {
          fields.push(this.#unquoted(bytes, p, k))
          p = k + this.#delimiter.length
          break
        }
        if (more(k)) return undefined
        const rd = this.#recordDelimiterAt(bytes, k)
        if (rd > 0) {
          // An empty line is skipped.
          if (fields.length === 0 && k === p) return { fields: undefined, line: ln, next: k + rd, lines: ln + 1 }
          fields.push(this.#unquoted(bytes, p, k))
          return { fields, line: ln, next: k + rd, lines: ln + 1 }
        }
        ln++ // a line break that is not the record delimiter: part of the field
        s = k + 1
      }
    }
  }

  /** A quote inside an unquoted field: csv-parse's INVALID_OPENING_QUOTE, naming the field and what came before the quote. */
  #openingQuote(index: number, bytes: Buffer, from: number, to: number, line: number): CsvSyntaxError {
    const column = this.column(index)
    const value = bytes.toString('utf8', from, to)
    const field = bytes.subarray(from, to)
    const bom = field.equals(UTF8_BOM) ? ' (utf8 bom)' : field.equals(UTF16LE_BOM) ? ' (utf16le bom)' : ''
    return new CsvSyntaxError(
      'INVALID_OPENING_QUOTE',
      `Invalid Opening Quote: a quote is found on field ${JSON.stringify(column)} at line ${line}, value is ${JSON.stringify(value)}${bom}`,
      line,
    )
  }

  /** Where the next delimiter, quote, CR or LF (`kind`) is at or after `from`; the length when none. */
  #next(bytes: Buffer, kind: number, from: number): number {
    const found = this.#found[kind]!
    if (found >= from) return found
    const at = kind === DELIMITER_AT ? bytes.indexOf(this.#delimiter, from) : bytes.indexOf(kind === QUOTE_AT ? QUOTE : kind === CR_AT ? CR : LF, from)
    return (this.#found[kind] = at === -1 ? bytes.length : at)
  }

  /** The first delimiter, quote, CR or LF at or after `from`; the length when none. */
  #special(bytes: Buffer, from: number): number {
    return Math.min(this.#next(bytes, DELIMITER_AT, from), this.#next(bytes, QUOTE_AT, from), this.#next(bytes, CR_AT, from), this.#next(bytes, LF_AT, from))
  }

  #unquoted(bytes: Buffer, from: number, to: number): string | null {
    return from === to && this.#emptyNull ? null : bytes.toString('utf8', from, to)
  }

  #delimiterAt(bytes: Buffer, at: number): boolean {
    const d = this.#delimiter
    for (let i = 0; i < d.length; i++) if (bytes[at + i] !== d[i]) return false
    return true
  }

  /** The record delimiter's length at `at` (discovering it at the first line break, as csv-parse does), or 0. */
  #recordDelimiterAt(bytes: Buffer, at: number): number {
    const rd = this.#rd
    if (rd.length === 0) {
      if (bytes[at] === LF) this.#rd = Buffer.from('\n')
      else if (bytes[at] === CR) this.#rd = Buffer.from(bytes[at + 1] === LF ? '\r\n' : '\r')
      return this.#rd.length
    }
    for (let i = 0; i < rd.length; i++) if (bytes[at + i] !== rd[i]) return 0
    return rd.length
  }
}
