// CSV records from text, as csv-parse reads them with csvSource's options (RFC 4180 quotes, the
// record delimiter discovered from the first line break: \r\n, \n or \r, empty lines skipped) and
// failing as it fails: the same error codes, messages and line numbers. A line without quotes is
// cut with indexOf and split(); only a record with quotes is read character by character.
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
const SEARCHED = ['', '"', '\r', '\n']

const isBreak = (code: number) => code === CR || code === LF

/** Line breaks (each CR and each LF, as csv-parse counts lines) in `text` from `from` to `to`. */
function breaks(text: string, from: number, to: number): number {
  let n = 0
  for (let i = from; i < to; i++) if (isBreak(text.charCodeAt(i))) n++
  return n
}

/**
 * Records from text given in pieces (`push`, then `end`). `column(i)` names field `i` in an error
 * (csv-parse's `info.column`: the header's name once known, else the index).
 */
export class CsvTokenizer {
  readonly #delimiter: string
  readonly #emptyNull: boolean
  readonly #lookahead: number
  #rd = '' // the record delimiter, once discovered
  #text = '' // text not parsed yet, from the start of a record
  #lines = 1 // csv-parse's line number at the start of #text
  #waitFor = 0 // an incomplete record waits until the text doubles (linear time for a huge field)
  // The next delimiter, quote, CR and LF found in the text being parsed (-1: not looked for yet;
  // its length: none): each is searched for again only once passed, so no text is scanned twice.
  #found = [-1, -1, -1, -1]
  column: (index: number) => string | number | null = (index) => index

  constructor(delimiter: string, emptyNull: boolean) {
    this.#delimiter = delimiter
    this.#emptyNull = emptyNull
    this.#lookahead = Math.max(delimiter.length, 2)
  }

  push(text: string, onRecord: OnRecord): void {
    this.#text += text
    if (this.#text.length >= this.#waitFor) this.#parse(false, onRecord)
  }

  end(onRecord: OnRecord): void {
    this.#parse(true, onRecord)
    this.#text = ''
  }

  #parse(final: boolean, onRecord: OnRecord): void {
    const text = this.#text
    const len = text.length
    const d = this.#delimiter
    let pos = 0
    let lines = this.#lines
    this.#found = [-1, -1, -1, -1]
    while (pos < len) {
      const rd = this.#rd
      if (rd !== '') {
        // A line without quotes or stray line breaks: cut whole.
        const end = text.indexOf(rd, pos)
        if (end !== -1) {
          if (this.#next(text, QUOTE_AT, pos) >= end && this.#next(text, CR_AT, pos) >= end && this.#next(text, LF_AT, pos) >= end) {
            if (end > pos) {
              const fields: Array<string | null> = text.slice(pos, end).split(d)
              if (this.#emptyNull) for (let i = 0; i < fields.length; i++) if (fields[i] === '') fields[i] = null
              onRecord(fields, lines)
            }
            lines++
            pos = end + rd.length
            continue
          }
        } else if (!final) break
      }
      const step = this.#record(text, pos, lines, final)
      if (step === undefined) break
      if (step.fields) onRecord(step.fields, step.line)
      pos = step.next
      lines = step.lines
    }
    this.#text = text.slice(pos)
    this.#lines = lines
    this.#waitFor = this.#text.length * 2
  }

  /** One record from `pos`, character by character; undefined when the text ends before it does (and more may come). */
  #record(text: string, pos: number, lines: number, final: boolean): Step | undefined {
    const len = text.length
    const d = this.#delimiter
    const fields: Array<string | null> = []
    let p = pos
    let ln = lines
    const more = (at: number) => !final && len - at < this.#lookahead
    for (;;) {
      if (p < len && text.charCodeAt(p) === QUOTE) {
        // A quoted field: to the closing quote ("" is a quote).
        let value = ''
        let q = p + 1
        for (;;) {
          const j = text.indexOf('"', q)
          if (j === -1) {
            if (!final) return undefined
            ln += breaks(text, q, len - 1) // (a break at the very end is not counted yet)
            throw new CsvSyntaxError('CSV_QUOTE_NOT_CLOSED', `Quote Not Closed: the parsing is finished with an opening quote at line ${ln}`, ln)
          }
          ln += breaks(text, q, j)
          value += text.slice(q, j)
          if (more(j + 1)) return undefined
          if (j + 1 === len) {
            fields.push(value)
            return { fields, line: ln, next: len, lines: ln }
          }
          if (text.charCodeAt(j + 1) === QUOTE) {
            value += '"'
            q = j + 2
            continue
          }
          if (text.startsWith(d, j + 1)) {
            fields.push(value)
            p = j + 1 + d.length
            break
          }
          const rd = this.#recordDelimiterAt(text, j + 1)
          if (rd > 0) {
            fields.push(value)
            return { fields, line: ln, next: j + 1 + rd, lines: ln + 1 }
          }
          // (csv-parse shows the first byte of the character.)
          const got = String.fromCharCode(Buffer.from(String.fromCodePoint(text.codePointAt(j + 1)!))[0]!)
          throw new CsvSyntaxError(
            'CSV_INVALID_CLOSING_QUOTE',
            `Invalid Closing Quote: got "${got}" at line ${ln} instead of delimiter, record delimiter, trimable character (if activated) or comment`,
            ln,
          )
        }
        continue
      }
      // An unquoted field: to a delimiter, a record delimiter or the end; a quote in it is an error.
      let s = p
      for (;;) {
        const k = this.#special(text, s)
        if (k === len) {
          if (!final) return undefined
          if (fields.length === 0 && k === p) return { fields: undefined, line: ln, next: len, lines: ln }
          fields.push(this.#unquoted(text.slice(p, len)))
          // (A break at the very end is not counted yet.)
          const line = len > p && isBreak(text.charCodeAt(len - 1)) ? ln - 1 : ln
          return { fields, line, next: len, lines: ln }
        }
        const code = text.charCodeAt(k)
        if (code === QUOTE) {
          const column = this.column(fields.length)
          const value = text.slice(p, k)
          throw new CsvSyntaxError(
            'INVALID_OPENING_QUOTE',
            `Invalid Opening Quote: a quote is found on field ${JSON.stringify(column)} at line ${ln}, value is ${JSON.stringify(value)}${value === '\ufeff' ? ' (utf8 bom)' : ''}`,
            ln,
          )
        }
        if (!isBreak(code)) {
          fields.push(this.#unquoted(text.slice(p, k)))
          p = k + d.length
          break
        }
        if (more(k)) return undefined
        const rd = this.#recordDelimiterAt(text, k)
        if (rd > 0) {
          // An empty line is skipped.
          if (fields.length === 0 && k === p) return { fields: undefined, line: ln, next: k + rd, lines: ln + 1 }
          fields.push(this.#unquoted(text.slice(p, k)))
          return { fields, line: ln, next: k + rd, lines: ln + 1 }
        }
        ln++ // a line break that is not the record delimiter: part of the field
        s = k + 1
      }
    }
  }

  /** Where the next of SEARCHED[kind] is at or after `from` in the text being parsed; its length when none. */
  #next(text: string, kind: number, from: number): number {
    const found = this.#found[kind]!
    if (found >= from) return found
    const at = text.indexOf(kind === DELIMITER_AT ? this.#delimiter : SEARCHED[kind]!, from)
    return (this.#found[kind] = at === -1 ? text.length : at)
  }

  /** The first delimiter, quote, CR or LF at or after `from`; the text's length when none. */
  #special(text: string, from: number): number {
    return Math.min(this.#next(text, DELIMITER_AT, from), this.#next(text, QUOTE_AT, from), this.#next(text, CR_AT, from), this.#next(text, LF_AT, from))
  }

  #unquoted(value: string): string | null {
    return value === '' && this.#emptyNull ? null : value
  }

  /** The record delimiter's length at `at` (discovering it at the first line break, as csv-parse does), or 0. */
  #recordDelimiterAt(text: string, at: number): number {
    if (this.#rd === '') {
      const code = text.charCodeAt(at)
      if (code === LF) this.#rd = '\n'
      else if (code === CR) this.#rd = text.charCodeAt(at + 1) === LF ? '\r\n' : '\r'
      return this.#rd.length
    }
    return text.startsWith(this.#rd, at) ? this.#rd.length : 0
  }
}
