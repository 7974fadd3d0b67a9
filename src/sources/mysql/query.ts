import { Readable } from 'node:stream'
import { invalidOption, toExportError } from '../../core/errors.js'
import { checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { rowBatch, type ColumnType, type Row, type SourceExtras } from '../../core/types.js'
import { setHighWaterMark } from '../high-water-mark.js'
import { uniqueColumnNames } from '../column-names.js'
import { checkMysqlClient, countRows, hold, killQuery, startQuery, utcSession, type Held, type MysqlConnectionLike, type MysqlPoolLike } from './connection.js'
import { castFor, mysqlColumnType, type MysqlField, type ZeroDates } from './types.js'

export interface MysqlSourceOptions {
  /** A mysql2 pool (`mysql2` or `mysql2/promise`): a connection is taken for the query and given back after. */
  pool?: MysqlPoolLike
  /** Or a connection of yours (kept open after; closed only when a query on it had to be stopped). */
  connection?: MysqlConnectionLike
  /** The SELECT, with `?` placeholders for `params`. */
  query: string
  params?: unknown[]
  /** Rows buffered ahead of the reader (the connection is paused beyond). Default 1000. */
  batchSize?: number
  /** A zero date (`0000-00-00`, a zero month or day): `'error'` (ERR_SOURCE, default) or `'null'`. */
  zeroDates?: ZeroDates
  /** Fill `totalRows` for progress, on a session of its own: `exact` (count(*)) or `estimate` (EXPLAIN). */
  count?: 'exact' | 'estimate'
}

const NAMES = optionNames<MysqlSourceOptions>({ pool: true, connection: true, query: true, params: true, batchSize: true, zeroDates: true, count: true })

/** The server may wait this long for a paused reader before dropping it (seconds): a day. */
const WRITE_TIMEOUT_S = 86_400

/** A MySQL or MariaDB query's rows, streamed (see mysqlSource). */
export class MysqlSource extends Readable implements SourceExtras {
  readonly #options: MysqlSourceOptions
  #held: Held | undefined
  #restore: (() => Promise<void>) | undefined
  #serverId = ''
  #fields: MysqlField[] = []
  #names: string[] = []

  #stopping = false // destroyed: rows still coming are dropped
  #broken = false // the connection failed: it can only be closed
  #queryDone: Promise<boolean> | undefined // the query's end or error
  #batch: Row[] | undefined // with sendBatches: rows gathered into a batch
  readonly #counted: Promise<number | undefined> | undefined
  #count: ((count: Promise<number | undefined>) => void) | undefined
  readonly #lost = (error?: Error) => {
    this.#broken = true
    this.destroy(toExportError(error ?? new Error('The connection to the server was closed during the query'), 'ERR_SOURCE', 'source'))
  }

  constructor(options: MysqlSourceOptions) {
    super({ objectMode: true, highWaterMark: options.batchSize ?? 1000 })
    this.#options = options
    // (A failed count costs only the percentage.)
    if (options.count) this.#counted = new Promise((resolve) => (this.#count = (count) => resolve(count.catch(() => undefined))))
  }

  /** Rows go out in batches of `batchSize` (see SourceExtras.sendBatches): one stream write per batch. */
  sendBatches(): void {
    this.#batch = []
    setHighWaterMark(this, 1) // a batch buffered while the next gathers
  }

  /** The row count for progress (`count`), counted on a session of its own while the rows stream. */
  countRows(): Promise<number | undefined> {
    return this.#counted ?? Promise.resolve(undefined)
  }

  /** The columns' types, once the server has described them. */
  columnTypes(): ColumnType[] | undefined {
    return this.#fields.length === 0 ? undefined : this.#fields.map((field, i) => mysqlColumnType(this.#names[i]!, field, this.#options.zeroDates))
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#start().then(
      () => callback(),
      (error: unknown) => {
        this.#count?.(Promise.resolve(undefined))
        callback(toExportError(error, 'ERR_SOURCE', 'source'))
      },
    )
  }

  async #start(): Promise<void> {
    const { query, params = [], zeroDates = 'error' } = this.#options
    const held = (this.#held = await hold(this.#options))
    const { connection } = held
    const { count } = this.#options
    if (count) this.#count?.(countRows(held, query, params, count))
    connection.on?.('error', this.#lost)
    connection.on?.('end', this.#lost)
    const session = await utcSession(connection, WRITE_TIMEOUT_S)
    this.#restore = session.restore
    this.#serverId = session.serverId
    // A cell that cannot be read (a zero date, JSON that is not) ends the query at once.
    const typeCast = castFor(
      () => this.#fields,
      zeroDates,
      (error) => this.destroy(toExportError(error, 'ERR_SOURCE', 'source')),
    )
    let settle: (ended: boolean) => void
    this.#queryDone = new Promise((resolve) => (settle = resolve))
    startQuery(connection, query, params, typeCast)
      .on('fields', (fields) => {
        this.#fields = (fields ?? []) as MysqlField[] // (none: a statement that is not a SELECT)
        this.#names = uniqueColumnNames(this.#fields.map((field) => field.name))
      })
      .on('result', (cells) => {
        if (this.#stopping) return
        const row: Row = {}
        for (let i = 0; i < cells.length; i++) row[this.#names[i]!] = cells[i]
        const batch = this.#batch
        if (batch) {
          batch.push(row)
          if (batch.length < (this.#options.batchSize ?? 1000)) return
          this.#batch = []
        }
        if (!this.push(batch ? rowBatch(batch) : row)) connection.pause?.()
      })
      .on('error', (error) => {
        settle(true)
        this.destroy(toExportError(error, 'ERR_SOURCE', 'source'))
      })
      .on('end', () => {
        settle(true)
        if (this.#stopping) return

        if (this.#batch?.length) this.push(rowBatch(this.#batch))
        this.#finish().then(
          () => this.push(null),
          (error: unknown) => this.destroy(toExportError(error, 'ERR_SOURCE', 'source')),
        )
      })
  }

  override _read(): void {
    this.#held?.connection.resume?.()
  }

  // The query ended: the caller's session settings back, the connection given back.
  async #finish(): Promise<void> {
    const held = this.#held!
    this.#held = undefined
    this.#let(held)
    await this.#giveBack(held)
  }

  #let(held: Held): void {
    held.connection.removeListener?.('error', this.#lost)
    held.connection.removeListener?.('end', this.#lost)
  }

  async #giveBack(held: Held): Promise<void> {
    try {
      await this.#restore?.()
      held.release()
    } catch {
      held.destroy()
    }
  }

  // Destroyed before its end (an abort, a failed stage): the statement is ended on the server
  // (KILL QUERY from another session), then the connection is given back; a connection that
  // failed, or a statement that would not end, is closed instead.
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopping = true
    const held = this.#held
    this.#held = undefined
    if (!held) return callback(error)
    this.#let(held)
    // (What a closing connection may still report; once per connection, which a pool reuses.)
    held.connection.removeListener?.('error', ignore)
    held.connection.on?.('error', ignore)
    this.#stop(held).then(
      () => callback(error),
      () => callback(error),
    )
  }

  async #stop(held: Held): Promise<void> {
    if (this.#broken) return held.destroy()
    const done = this.#queryDone
    if (done && !(await Promise.race([done, Promise.resolve(false)]))) {
      held.connection.resume?.() // (the rows still on their way are read and dropped)
      const ended = (await killQuery(held, STOP_MS, this.#serverId)) && (await Promise.race([done, delay(STOP_MS)]))
      if (!ended) return held.destroy()
    }
    await this.#giveBack(held)
  }
}

const ignore = () => {}

/** How long a query is given to end when stopped, before its connection is closed (ms). */
const STOP_MS = 5000
const delay = (ms: number) => new Promise<false>((resolve) => setTimeout(() => resolve(false), ms).unref())

/**
 * Rows of a MySQL or MariaDB query, streamed from the server as they come (mysql2's text protocol:
 * no result set held in memory), the connection paused while the reader is behind. Values follow
 * the library's policy (src/sources/mysql/types.ts): BIGINT and DECIMAL exact, DATETIME and
 * TIMESTAMP with every fractional digit (TIMESTAMP in UTC), zero dates by `zeroDates`, binary as
 * Buffer. `columnTypes()` gives Parquet and XLSX their types. Destroyed early (an abort), the
 * statement is ended with KILL QUERY from another session and the connection given back (closed
 * when that cannot be done).
 */
export function mysqlSource(options: MysqlSourceOptions): MysqlSource {
  checkObject('options', options, NAMES)
  checkMysqlClient(options)
  checkString('query', options.query)
  if (options.params !== undefined && !Array.isArray(options.params)) invalidOption('params', 'an array', options.params)
  if (options.batchSize !== undefined) checkPositiveInteger('batchSize', options.batchSize)
  if (options.count !== undefined && options.count !== 'exact' && options.count !== 'estimate') invalidOption('count', "'exact' or 'estimate'", options.count)
  if (options.zeroDates !== undefined && options.zeroDates !== 'error' && options.zeroDates !== 'null')
    invalidOption('zeroDates', "'error' or 'null'", options.zeroDates)
  return new MysqlSource(options)
}
