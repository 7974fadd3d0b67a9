import { Readable } from 'node:stream'
import { invalidOption, toExportError } from '../errors.js'
import type { SourceExtras } from '../export-stream.js'
import { checkBoolean, checkObject, checkString } from '../options.js'
import { checkConnection, connect, loadPg, type Connection, type PostgresConnectionOptions } from './postgres-connection.js'

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
  const pg = loadPg<typeof import('pg')>('pg')
  const { prepareValue } = loadPg<{ prepareValue(value: unknown): unknown }>('pg/lib/utils.js')
  const literal = (value: unknown): string => {
    const prepared = prepareValue(value)
    if (prepared === null || prepared === undefined) return 'NULL'
    if (Buffer.isBuffer(prepared)) return `'\\x${prepared.toString('hex')}'::bytea`
    return pg.escapeLiteral(String(prepared))
  }
  const query = inlineParameters(text, values.length, (n) => literal(values[n - 1]))
  const sql = `COPY (${query}) TO STDOUT WITH (FORMAT csv${header ? ', HEADER' : ''})`
  const { to } = loadPg<{ to(sql: string): CopyStream }>('pg-copy-streams')

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
      release().then(() => callback(error))
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
    copy = to(sql)
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
      completed.then(async () => {
        finished = true
        await conn.release()
        output.push(null)
      })
    })
    conn.client.query(copy as never)
  }, fail)

  return output
}

/**
 * Replaces `$1`..`$n` placeholders by `literal(n)`, skipping '...' strings (also E'' with
 * backslashes), "quoted" names, $tag$ dollar quotes, -- and /* comments.
 */
export function inlineParameters(text: string, count: number, literal: (n: number) => string): string {
  let out = ''
  let i = 0
  const skipTo = (end: string, from: number, backslashes = false) => {
    let j = from
    while (j < text.length) {
      if (backslashes && text[j] === '\\') j += 2
      else if (text.startsWith(end, j)) {
        // a doubled quote inside '...' or "..." continues the string
        if ((end === "'" || end === '"') && text[j + 1] === end) j += 2
        else return j + end.length
      } else j++
    }
    return text.length
  }
  while (i < text.length) {
    const c = text[i]
    let next = i + 1
    if (c === "'") next = skipTo("'", i + 1, i > 0 && /[eE]/.test(text[i - 1]) && !/\w/.test(text[i - 2] ?? ''))
    else if (c === '"') next = skipTo('"', i + 1)
    else if (c === '-' && text[i + 1] === '-') next = skipTo('\n', i + 2)
    else if (c === '/' && text[i + 1] === '*') next = skipTo('*/', i + 2)
    else if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i))
      const param = /^\$(\d+)/.exec(text.slice(i))
      if (tag && !/\w/.test(text[i - 1] ?? '')) next = skipTo(tag[0], i + tag[0].length)
      else if (param && !/\w/.test(text[i - 1] ?? '')) {
        const n = Number(param[1])
        if (n < 1 || n > count) invalidOption('values', `an array with a value for $${n}`, count)
        out += literal(n)
        i += param[0].length
        continue
      }
    }
    out += text.slice(i, next)
    i = next
  }
  return out
}
