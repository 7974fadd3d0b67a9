import type { Readable } from 'node:stream'
import { ExportError, invalidOption, toExportError } from '../../core/errors.js'
import { checkObject, checkOneOf, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { checkConnection, checkGuards, CONNECTION_OPTION_NAMES, connect, countRows, type Connection, type PostgresConnectionOptions } from './connection.js'
import { uniqueColumnNames } from '../column-names.js'
import { losslessTypes, pgColumnType, type PgField } from './types.js'
import { BinaryLines, copyQuery, copyRefusal, CsvRecords, dependsOnDateStyle } from './text.js'
import { inlineParameters } from './copy.js'
import { CopyOut, CursorStream, sqlLiteral } from './pg-adapter.js'
import { rowBatch, type ColumnType, type SourceExtras, type TextEncoding } from '../../core/types.js'
import { setHighWaterMark } from '../high-water-mark.js'

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
export type PostgresSource = Readable &
  SourceExtras & {
    /**
     * Why the rows go through the row path rather than being written by PostgreSQL (see
     * docs/postgres.md), once the source has decided; `undefined` when PostgreSQL writes them.
     */
    readonly rowPathReason: string | undefined
  }

/**
 * pg-query-stream's QueryStream (through pg-adapter.ts) with the three things a source of ours adds:
 * unique column names, a connection released exactly once (as failed when the cursor failed), and
 * the column types.
 */
class PostgresQueryStream extends CursorStream implements SourceExtras {
  connection: Connection | undefined
  counted: Promise<number | undefined> = Promise.resolve(undefined)
  started: Promise<void> = Promise.resolve()
  /** The format's encoding, when the export asked for encoded rows (see `encodeFor`). */
  #encoding: TextEncoding | undefined
  /** See `PostgresSource.rowPathReason`. */
  rowPathReason: string | undefined = 'no encoding asked for'
  /** The COPY writing encoded rows, once it runs instead of the cursor. */
  #copy: CopyOut['stream'] | undefined
  #copyDone = false
  #describing = false
  #onEncoding: (() => void) | undefined
  #fields: PgField[] | undefined

  readonly #batchSize: number
  #batches = false

  constructor(text: string, values: unknown[], batchSize: number) {
    super(text, values, { batchSize, types: losslessTypes() })
    this.#batchSize = batchSize
  }

  // Rows are objects: a repeated column name (a join) would overwrite the earlier column. The
  // names are made unique before pg builds the rows from them.
  protected override describeFields(fields: PgField[]): PgField[] {
    const names = uniqueColumnNames(fields.map((field) => field.name))
    return fields.map((field, i) => ({ ...field, name: names[i]! }))
  }

  encodeFor(encoding: TextEncoding, onEncoding?: () => void): void {
    this.#encoding = encoding
    this.#onEncoding = onEncoding
  }

  /**
   * Runs `COPY` instead of the cursor when PostgreSQL can write exactly the bytes the format
   * would (text.ts): the query's row description comes first. Returns false otherwise.
   */
  async copyInstead(conn: Connection, text: string, values: unknown[]): Promise<boolean> {
    const encoding = this.#encoding
    if (encoding === undefined) return false
    const client = conn.client as unknown as { query(q: object): Promise<{ fields: PgField[]; rows: Array<{ DateStyle: string }> }> }
    let fields: PgField[]
    let dateStyle: string | undefined
    this.#describing = true
    try {
      ;({ fields } = await client.query({ text: `SELECT * FROM (${text}) AS q LIMIT 0`, values, types: losslessTypes() }))
      if (dependsOnDateStyle(fields)) dateStyle = (await client.query({ text: 'SHOW DateStyle' })).rows[0]!.DateStyle
    } catch (error) {
      this.rowPathReason = `the query cannot be described as a subquery (${(error as Error).message})`
      return false
    } finally {
      this.#describing = false
    }
    this.rowPathReason = copyRefusal(fields, encoding, dateStyle)
    if (this.rowPathReason !== undefined || this.destroyed) return false
    const names = uniqueColumnNames(fields.map((field) => field.name))
    this.#fields = fields.map((field, i) => ({ ...field, name: names[i]! }))
    const sql = copyQuery(
      inlineParameters(text, values.length, (n) => sqlLiteral(values[n - 1])),
      fields,
      names,
      encoding,
    )
    // The cursor's buffer holds `batchSize` rows; COPY's chunks are ~64 KiB each: a few of them.
    setHighWaterMark(this, 4)
    const query = new CopyOut(sql)
    const records = encoding.kind === 'csv' ? new CsvRecords(encoding) : new BinaryLines()
    let rows = 0
    const copy = (this.#copy = query.stream)
    copy.on('data', (chunk: Buffer) => {
      const batch = records.push(chunk)
      if (batch.bytes.length === 0) return
      rows += batch.encodedRows
      if (!this.push(batch)) copy.pause()
    })
    copy.on('error', (error: Error) => this.destroy(toExportError(error, 'ERR_SOURCE', 'source')))
    copy.on('end', () => {
      void query.completed.then(async () => {
        this.#copyDone = true
        const counted = copy.rowCount
        if (records.pending > 0 || rows !== counted) {
          this.destroy(new ExportError('ERR_SOURCE', 'source', `COPY sent ${counted} rows; ${rows} were read, and ${records.pending} bytes after the last`))
          return
        }
        await this.connection?.release()
        this.connection = undefined
        this.push(null)
      })
    })
    conn.client.query(query as never)
    this.#onEncoding?.()
    return true
  }

  sendBatches(): void {
    this.#batches = true
    setHighWaterMark(this, 1) // a page buffered while the next is fetched, as with rows
  }

  override _read(size: number): void {
    if (this.#copy) this.#copy.resume()
    else if (!this.#batches) super._read(size)
    else
      this.readPage(this.#batchSize, (error, rows) => {
        if (error) return void this.destroy(error)
        if (rows.length > 0) this.push(rowBatch(rows))
        if (rows.length < this.#batchSize) this.push(null)
      })
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#copy || this.#describing) {
      // A COPY cut short (or a describe) leaves the connection mid-protocol: the pool must replace it.
      const interrupted = !this.#copyDone
      const released = this.connection?.release(interrupted ? (error ?? new Error('COPY interrupted')) : undefined) ?? Promise.resolve()
      void released.then(() => callback(error))
      return
    }
    // The cursor: QueryStream closes it here; when the cursor itself failed (a query error, a
    // terminated backend) there is nothing to close and the connection may be dead: skip the close,
    // and release the client as failed so the pool replaces it.
    const cursorFailed = this.cursorFailed
    const finish = (closeError?: Error | null) => {
      const failure = cursorFailed ? error : closeError
      const released = this.connection ? this.connection.release(failure ?? undefined) : Promise.resolve()
      const reported = failure ? toExportError(failure, 'ERR_SOURCE', 'source') : error
      void released.then(() => callback(reported))
    }
    if (cursorFailed || this.connection === undefined) return finish()
    this.dropQueuedReads() // before the Close and Sync: no Execute may follow them
    super._destroy(error as Error, (closeError: Error | null | undefined) => finish(closeError === error ? null : closeError))
  }

  columnTypes(): ColumnType[] | undefined {
    const fields = this.#fields ?? this.describedFields
    return fields.length ? fields.map(pgColumnType) : undefined
  }

  async countRows(): Promise<number | undefined> {
    await this.started
    return this.counted
  }
}

const POSTGRES_SOURCE_OPTION_NAMES = optionNames<PostgresSourceOptions>({
  text: true,
  values: true,
  batchSize: true,
  count: true,
  ...CONNECTION_OPTION_NAMES,
})

/**
 * Rows of a query, streamed through a server-side cursor (pg-query-stream): constant memory for
 * any row count. The connection is released exactly once, on end, error or destroy; the cursor is
 * closed first on an early destroy (releasing a client mid-cursor would wedge it).
 *
 * @example exportStream({ source: postgresSource({ pool, text: 'select * from statements order by id' }), format: csv(), sink })
 */
export function postgresSource(options: PostgresSourceOptions): PostgresSource {
  checkObject('options', options, POSTGRES_SOURCE_OPTION_NAMES)
  checkConnection(options)
  const { text, values = [], batchSize = 1000, count } = options
  checkString('text', text)
  if (!Array.isArray(values)) invalidOption('values', 'an array', values)
  checkPositiveInteger('batchSize', batchSize)
  if (count !== undefined) checkOneOf('count', count, ['exact', 'estimate'] as const)

  const stream = new PostgresQueryStream(text, values, batchSize)
  stream.started = connect(options).then(
    async (conn) => {
      stream.connection = conn
      if (stream.destroyed) return void conn.release()
      if (count) stream.counted = countRows({ client: conn.client, pool: options.pool, guards: checkGuards(options), text, values, count })
      // On a single connection the count must finish before the cursor takes it over.
      if (!options.pool) await stream.counted.catch(() => {})
      if (stream.destroyed) return void conn.release()
      // A caller's client may be inside a transaction that a failed describe would abort. A COPY is
      // one statement, timed whole by statement_timeout; a cursor's fetches are timed one by one.
      if (options.statementTimeoutMs !== undefined) stream.rowPathReason = 'statementTimeoutMs: a COPY would be timed whole, the cursor fetch by fetch'
      else if (options.client === undefined && (await stream.copyInstead(conn, text, values))) return
      if (stream.destroyed) return void conn.release()
      conn.client.query(stream as never)
    },
    (error) => void stream.destroy(toExportError(error, 'ERR_SOURCE', 'source')),
  )
  return stream
}
