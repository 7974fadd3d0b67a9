import { Readable } from 'node:stream'
import { invalidOption, toExportError } from '../../core/errors.js'
import { checkBoolean, checkObject, checkString, optionNames } from '../../core/options.js'
import { checkConnection, CONNECTION_OPTION_NAMES, connect, type Connection, type PostgresConnectionOptions } from './connection.js'
import { CopyOut, sqlLiteral } from './pg-adapter.js'
import type { SourceExtras } from '../../core/types.js'

export interface PostgresCopySourceOptions extends PostgresConnectionOptions {
  /** A SELECT query; its rows become CSV on the server. */
  text: string
  /**
   * Values for `$1`, `$2`... COPY takes no bind parameters, so each value is sent as a quoted
   * literal (escaped by pg's `escapeLiteral`, typed by its context like a parameter); `$n` inside
   * strings, quoted names and comments is left alone.
   */
  values?: unknown[]
  /** Write the header line. Default `true`. */
  header?: boolean
}

/** A byte source of CSV produced by Postgres itself; use it without a `format`. */
export type PostgresCopySource = Readable & SourceExtras & { readonly preformatted: NonNullable<SourceExtras['preformatted']> }

type CopyStream = CopyOut['stream']

const POSTGRES_COPY_SOURCE_OPTION_NAMES = optionNames<PostgresCopySourceOptions>({
  text: true,
  values: true,
  header: true,
  ...CONNECTION_OPTION_NAMES,
})

/**
 * The fast path for plain CSV: `COPY (query) TO STDOUT WITH (FORMAT csv, HEADER)` streamed with
 * pg-copy-streams. Postgres does the encoding (its own CSV rules: NULL is an empty field, "" an
 * empty string); `rows` comes from the COPY command tag.
 *
 * Aborting ends the connection the COPY ran on (a COPY cannot be stopped and the connection
 * reused): a pool replaces it; a client you passed is closed.
 */
export function postgresCopySource(options: PostgresCopySourceOptions): PostgresCopySource {
  checkObject('options', options, POSTGRES_COPY_SOURCE_OPTION_NAMES)
  checkConnection(options)
  const { text, values = [], header = true } = options
  checkString('text', text)
  if (!Array.isArray(values)) invalidOption('values', 'an array', values)
  checkBoolean('header', header)
  const query = inlineParameters(text, values.length, (n) => sqlLiteral(values[n - 1]))
  const sql = `COPY (${query}) TO STDOUT WITH (FORMAT csv${header ? ', HEADER' : ''})`

  const output = new CopyReadable(options.client !== undefined)
  connect(options).then(
    (conn) => output.start(conn, new CopyOut(sql)),
    (error: Error) => output.fail(error),
  )
  return output
}

/** The bytes of one COPY, with its row count; owns the connection until the end. */
class CopyReadable extends Readable implements PostgresCopySource {
  readonly preformatted: PostgresCopySource['preformatted']
  #connection: Connection | undefined
  #copy: CopyStream | undefined
  #finished = false
  #failure: Error | undefined

  /** @param callersClient the connection is the caller's client: an interrupted COPY must end it. */
  constructor(private readonly callersClient: boolean) {
    super()
    const rows = () => this.#copy?.rowCount ?? 0
    this.preformatted = {
      contentType: 'text/csv; charset=utf-8',
      extension: 'csv',
      get rows() {
        return rows()
      },
    }
  }

  start(connection: Connection, query: CopyOut): void {
    this.#connection = connection
    if (this.destroyed) return void connection.release()
    const copy = (this.#copy = query.stream)
    copy.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) copy.pause()
    })
    copy.on('error', (error: Error) => this.fail(error))
    // The command tag (the row count) arrives after the data; end the stream only once it has.
    copy.on('end', () => {
      void query.completed.then(async () => {
        this.#finished = true
        await connection.release()
        this.push(null)
      })
    })
    connection.client.query(query as never)
  }

  fail(error: Error): void {
    this.#failure ??= error
    this.destroy(toExportError(error, 'ERR_SOURCE', 'source'))
  }

  override _read(): void {
    this.#copy?.resume()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const connection = this.#connection
    const interrupted = !this.#finished && this.#copy !== undefined
    // A COPY cut short leaves the connection mid-protocol: end it (a pool replaces it).
    const release = async () => {
      if (!connection) return
      if (interrupted && this.callersClient) await connection.client.end?.().catch(() => {})
      await connection.release(this.#failure ?? (interrupted ? new Error('COPY interrupted') : undefined))
    }
    void release().then(() => callback(error))
  }
}

// PostgreSQL's lexer (src/backend/parser/scan.l): identifiers continue with letters, digits, `_`,
// `$` and any non-ASCII character, so `a$1` is a name, not a parameter.
const IDENT = /[A-Za-z0-9_$\u0080-\uffff]/
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/
const PARAM = /^\$(\d+)/

/**
 * Replaces `$1`..`$n` placeholders by `literal(n)`, following PostgreSQL's lexer so that a value is
 * only ever placed where the server would read a parameter: not inside '...' strings (E'' with
 * backslash escapes; U&'', B'', X'' like standard strings, standard_conforming_strings on),
 * "quoted" names, $tag$ dollar quotes, names such as `a$1`, `--` comments (ended by LF or CR) or
 * nested block comments.
 */
export function inlineParameters(text: string, count: number, literal: (n: number) => string): string {
  const n = text.length
  // End of a quoted run that started before `from`: a doubled quote continues it.
  const quoted = (from: number, quote: string, backslashes: boolean) => {
    let j = from
    while (j < n) {
      if (backslashes && text[j] === '\\') j += 2
      else if (text[j] !== quote) j++
      else if (text[j + 1] === quote) j += 2
      else return j + 1
    }
    return n
  }
  let out = ''
  let i = 0
  while (i < n) {
    const c = text[i]!
    let end = i + 1
    if (c === '-' && text[i + 1] === '-') {
      while (end < n && text[end] !== '\n' && text[end] !== '\r') end++
    } else if (c === '/' && text[i + 1] === '*') {
      let depth = 1
      end = i + 2
      while (end < n && depth > 0) {
        if (text.startsWith('/*', end)) {
          depth++
          end += 2
        } else if (text.startsWith('*/', end)) {
          depth--
          end += 2
        } else end++
      }
    } else if (c === "'") {
      end = quoted(i + 1, "'", false)
    } else if (c === '"') {
      end = quoted(i + 1, '"', false)
    } else if (c === '$') {
      const param = PARAM.exec(text.slice(i, i + 16))
      if (param) {
        const number = Number(param[1])
        if (number < 1 || number > count) invalidOption('values', `an array with a value for $${number}`, count)
        out += literal(number)
        i += param[0].length
        continue
      }
      const tag = DOLLAR_TAG.exec(text.slice(i, i + 256))
      if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length)
        end = close < 0 ? n : close + tag[0].length
      }
    } else if (IDENT.test(c)) {
      // A whole name, keyword or number at once: a `$` inside it is part of it.
      while (end < n && IDENT.test(text[end]!)) end++
      // E'...': the one string form with backslash escapes.
      if (end === i + 1 && (c === 'e' || c === 'E') && text[end] === "'") end = quoted(end + 1, "'", true)
    }
    out += text.slice(i, end)
    i = end
  }
  return out
}
