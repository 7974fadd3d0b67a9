import type { Readable } from 'node:stream'
import { invalidOption, toExportError } from '../errors.js'
import { checkObject, checkOneOf, checkPositiveInteger, checkString } from '../options.js'
import QueryStream from 'pg-query-stream'
import { checkConnection, connect, countRows, type Connection, type PostgresConnectionOptions } from './postgres-connection.js'
import { uniqueColumnNames } from './column-names.js'
import { losslessTypes, pgColumnType, type PgField } from './postgres-types.js'
import type { SourceExtras } from '../types.js'

export interface PostgresSourceOptions extends PostgresConnectionOptions {
  /** The query. Use `$1`, `$2`... placeholders with `values`; never build SQL from user input. */
  text: string
  values?: unknown[]
  /**
   * Rows fetched per round trip (one batch per `_read`). Default 1000. Memory: about
   * 2 x batchSize rows (one batch being read, one buffered). pg-query-stream's default of 100 is
   * latency-bound.
   */
  batchSize?: number
  /**
   * Fill `totalRows` for progress: `exact` runs `count(*)` over the query (on another pool
   * connection, or before the cursor on a given client); `estimate` asks the planner (`EXPLAIN`).
   * Default: none.
   */
  count?: 'exact' | 'estimate'
}

/** A Postgres row source: a Readable of rows with the lossless value policy. */
export type PostgresSource = Readable & SourceExtras

interface QueryStreamLike extends Readable {
  cursor: { state: string; close(cb: (error?: Error) => void): void; _result?: { fields: PgField[] } }
  /** The cursor's, bound: pg calls it on the submitted query with the row description. */
  handleRowDescription(message: { fields: PgField[] }): void
}

/**
 * Rows of a query, streamed through a server-side cursor (pg-query-stream): constant memory for
 * any row count. The connection is released exactly once, on end, error or destroy; the cursor is
 * closed first on an early destroy (releasing a client mid-cursor would wedge it).
 *
 * @example exportStream({ source: postgresSource({ pool, text: 'select * from statements order by id' }), format: csv(), sink })
 */
export function postgresSource(options: PostgresSourceOptions): PostgresSource {
  checkObject('options', options)
  checkConnection(options)
  const { text, values = [], batchSize = 1000, count } = options
  checkString('text', text)
  if (!Array.isArray(values)) invalidOption('values', 'an array', values)
  checkPositiveInteger('batchSize', batchSize)
  if (count !== undefined) checkOneOf('count', count, ['exact', 'estimate'] as const)

  const stream = new QueryStream(text, values, { batchSize, types: losslessTypes() as never }) as unknown as QueryStreamLike & PostgresSource
  let connection: Connection | undefined
  let counted: Promise<number | undefined> = Promise.resolve(undefined)

  // pg-query-stream closes the cursor in _destroy; when the cursor itself failed (a query error,
  // a terminated backend) there is nothing to close and the connection may be dead: skip the
  // close, and release the client as failed so the pool replaces it.
  const closeCursor = stream._destroy.bind(stream)
  stream._destroy = (error, callback) => {
    const cursorFailed = stream.cursor.state === 'error'
    const finish = (closeError?: Error | null) => {
      const failure = cursorFailed ? error : closeError
      const released = connection ? connection.release(failure ?? undefined) : Promise.resolve()
      const reported = failure ? toExportError(failure, 'ERR_SOURCE', 'source') : error
      void released.then(() => callback(reported))
    }
    if (cursorFailed || connection === undefined) finish()
    else closeCursor(error, (closeError) => finish(closeError === error ? null : closeError))
  }

  // Rows are objects: a repeated column name (a join) would overwrite the earlier column. The
  // names are made unique before pg builds the rows from them.
  const describeRows = stream.handleRowDescription
  stream.handleRowDescription = (message) => {
    const names = uniqueColumnNames(message.fields.map((field) => field.name))
    describeRows({ ...message, fields: message.fields.map((field, i) => ({ ...field, name: names[i]! })) })
  }

  const started = connect(options).then(
    async (conn) => {
      connection = conn
      if (stream.destroyed) return void conn.release()
      counted = count ? countRows({ client: conn.client, pool: options.pool, text, values, count }) : counted
      // On a single connection the count must finish before the cursor takes it over.
      if (!options.pool) await counted.catch(() => {})
      if (stream.destroyed) return void conn.release()
      conn.client.query(stream as never)
    },
    (error) => stream.destroy(toExportError(error, 'ERR_SOURCE', 'source')),
  )
  stream.columnTypes = () => {
    const fields = stream.cursor._result?.fields
    return fields?.length ? fields.map(pgColumnType) : undefined
  }
  stream.countRows = async () => {
    await started
    return counted
  }
  return stream
}
