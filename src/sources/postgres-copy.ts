import { Readable } from 'node:stream'
import { invalidOption, toExportError } from '../errors.js'
import { checkBoolean, checkObject, checkString } from '../options.js'
import pg from 'pg'
import pgUtils from 'pg/lib/utils.js'
import copyStreams from 'pg-copy-streams'
import { checkConnection, connect, type Connection, type PostgresConnectionOptions } from './postgres-connection.js'
import type { SourceExtras } from '../types.js'

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

interface CopyStream extends Readable {
  rowCount: number
  handleReadyForQuery(...args: unknown[]): void
}

/**
 * The fast path for plain CSV: `COPY (query) TO STDOUT WITH (FORMAT csv, HEADER)` streamed with
 * pg-copy-streams. Postgres does the encoding (its own CSV rules: NULL is an empty field, "" an
 * empty string); `rows` comes from the COPY command tag.
 *
 * Aborting ends the connection the COPY ran on (a COPY cannot be stopped and the connection
 * reused): a pool replaces it; a client you passed is closed.
 */
export function postgresCopySource(options: PostgresCopySourceOptions): PostgresCopySource {
  checkObject('options', options)
  checkConnection(options)
  const { text, values = [], header = true } = options
  checkString('text', text)
  if (!Array.isArray(values)) invalidOption('values', 'an array', values)
  checkBoolean('header', header)
  const literal = (value: unknown): string => {
    const prepared = pgUtils.prepareValue(value)
    if (prepared === null || prepared === undefined) return 'NULL'
    if (Buffer.isBuffer(prepared)) return `'\\x${prepared.toString('hex')}'::bytea`
    return pg.escapeLiteral(String(prepared))
  }
  const query = inlineParameters(text, values.length, (n) => literal(values[n - 1]))
  const sql = `COPY (${query}) TO STDOUT WITH (FORMAT csv${header ? ', HEADER' : ''})`

  let connection: Connection | undefined
  let copy: CopyStream | undefined
  let finished = false
  let failure: Error | undefined

  const output = new Readable({
    read() {
      copy?.resume()
    },
    destroy(error, callback) {
      const interrupted = !finished && copy !== undefined
      // A COPY cut short leaves the connection mid-protocol: end it (a pool replaces it).
      const release = async () => {
        if (!connection) return
        if (interrupted && options.client) await connection.client.end?.().catch(() => {})
        await connection.release(failure ?? (interrupted ? new Error('COPY interrupted') : undefined))
      }
      void release().then(() => callback(error))
    },
  }) as PostgresCopySource
  Object.defineProperty(output, 'preformatted', {
    value: Object.defineProperty({ contentType: 'text/csv; charset=utf-8', extension: 'csv' }, 'rows', { get: () => copy?.rowCount ?? 0 }),
    enumerable: true,
  })

  const fail = (error: Error) => {
    failure ??= error
    output.destroy(toExportError(error, 'ERR_SOURCE', 'source'))
  }

  connect(options).then((conn) => {
    connection = conn
    if (output.destroyed) return void conn.release()
    copy = copyStreams.to(sql) as unknown as CopyStream
    // The command tag (the row count) arrives after the data; end the stream only once it has.
    const completed = new Promise<void>((resolve) => {
      const handleReadyForQuery = copy!.handleReadyForQuery.bind(copy)
      copy!.handleReadyForQuery = (...args) => {
        handleReadyForQuery(...args)
        resolve()
      }
    })
    copy.on('data', (chunk: Buffer) => {
      if (!output.push(chunk)) copy!.pause()
    })
    copy.on('error', fail)
    copy.on('end', () => {
      void completed.then(async () => {
        finished = true
        await conn.release()
        output.push(null)
      })
    })
    conn.client.query(copy as never)
  }, fail)

  return output
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
