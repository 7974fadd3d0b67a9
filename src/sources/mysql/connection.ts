// The one module that speaks mysql2 (an optional peer): a connection from a pool or the caller's
// own (callback or promise API), the session settings a query runs under, and the query itself
// as mysql2's event emitter.
import { invalidOption } from '../../core/errors.js'
import { loadOptional } from '../../core/optional.js'

/** A mysql2 connection (`mysql2` or `mysql2/promise`; a pool's too), structurally. */
export interface MysqlConnectionLike {
  query(...args: never[]): unknown
}

/** What the sources use of a callback connection (mysql2's `Connection`). */
interface Connection {
  query(options: object, callback?: (error: Error | null, rows: unknown[]) => void): unknown
  threadId?: number | null
  pause?(): void
  resume?(): void
  release?(): void
  destroy?(): void
  on?(event: string, listener: (...args: never[]) => void): unknown
  removeListener?(event: string, listener: (...args: never[]) => void): unknown
  /** A `mysql2/promise` connection's callback connection. */
  connection?: Connection
  config?: unknown
  stream?: { destroy?(): void }
}

/** A mysql2 pool (`mysql2` or `mysql2/promise`), structurally. */
export interface MysqlPoolLike {
  getConnection(...args: never[]): unknown
}

/** A callback connection and how to give it back. */
export interface Held {
  connection: Connection
  /** Gives the connection back: to its pool, or (a caller's) keeps it open. */
  release(): void
  /** Closes its socket for good (a query that cannot be stopped otherwise, a broken connection). */
  destroy(): void
  /** Another session to the same server, for `KILL QUERY` (the pool's, or a new one like the caller's). */
  side(): Promise<{ connection: Connection; release(): void }>
}

/** The query of mysql2 (`Commands.Query`): an emitter of `fields`, `result` (a row), `error`, `end`. */
export interface MysqlQuery {
  on(event: 'fields', listener: (fields: unknown[]) => void): MysqlQuery
  on(event: 'result', listener: (row: unknown[]) => void): MysqlQuery
  on(event: 'error', listener: (error: Error) => void): MysqlQuery
  on(event: 'end', listener: () => void): MysqlQuery
}

/** Checks `pool` / `connection` when the source is created: exactly one. */
export function checkMysqlClient(options: { pool?: unknown; connection?: unknown }): void {
  const { pool, connection } = options
  if ((pool === undefined) === (connection === undefined)) invalidOption('pool', 'a mysql2 pool, or `connection` instead (one of them)', pool)
  if (pool !== undefined && typeof (pool as MysqlPoolLike).getConnection !== 'function') invalidOption('pool', 'a mysql2 pool (createPool)', pool)
  // (A pool given as `connection` would run the session's settings and the query on different connections.)
  if (
    connection !== undefined &&
    (typeof (connection as MysqlConnectionLike).query !== 'function' || typeof (connection as MysqlPoolLike).getConnection === 'function')
  )
    invalidOption('connection', 'a mysql2 connection (createConnection or pool.getConnection), not a pool (give it as `pool`)', connection)
}

/** A callback connection from the pool, or the caller's connection (the callback one under a promise wrapper). */
export async function hold(options: { pool?: MysqlPoolLike; connection?: MysqlConnectionLike }): Promise<Held> {
  if (options.connection) {
    const given = options.connection as Connection
    const connection = typeof given.connection?.query === 'function' ? given.connection : given
    return {
      connection,
      release: () => {},
      destroy: () => close(connection),
      // A new session with the caller's connection's settings, closed after.
      side: () => {
        const mysql = loadOptional<{ createConnection(config: unknown): Connection & { end(): void } }>('mysql2', 'mysql2')
        const other = mysql.createConnection(connection.config)
        other.on?.('error', () => {})
        return Promise.resolve({ connection: other, release: () => other.end() })
      },
    }
  }
  const given = options.pool as MysqlPoolLike & { pool?: MysqlPoolLike }
  const pool = typeof given.pool?.getConnection === 'function' ? given.pool : given
  const take = () =>
    new Promise<Connection>((resolve, reject) =>
      (pool.getConnection as (callback: (error: Error | null, connection: Connection) => void) => void)((error, c) => (error ? reject(error) : resolve(c))),
    )
  const fromPool = (connection: Connection): Held => ({
    connection,
    release: () => connection.release?.(),
    destroy: () => close(connection),
    side: async () => fromPool(await take()),
  })
  return fromPool(await take())
}

// mysql2's destroy() only half-closes (its socket still waits for the rest of the rows): the
// socket itself is destroyed, which ends the session on the server.
function close(connection: Connection): void {
  const socket = connection.stream
  connection.destroy?.()
  socket?.destroy?.()
}

// A query's options that a caller's pool config would otherwise set for it (mysql2 copies them
// into every query): rows as plain objects of plain values.
const PLAIN = {
  rowsAsArray: false,
  nestTables: false,
  typeCast: true,
  supportBigNumbers: false,
  bigNumberStrings: false,
  dateStrings: false,
  decimalNumbers: false,
}

/** Runs a statement of the library's own to its end: its rows as plain objects, whatever the pool's settings. */
export function run(connection: Connection, sql: string, values?: unknown[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => connection.query({ ...PLAIN, sql, values }, (error, rows) => (error ? reject(error) : resolve(rows))))
}

/** The options of a query whose rows come as arrays, each cell read by `typeCast`. */
export const arrayRows = (sql: string, values: unknown[], typeCast: unknown) => ({ sql, values, rowsAsArray: true, nestTables: false, typeCast })

/** Starts a query whose rows come as arrays, each cell read by `typeCast`. */
export function startQuery(connection: Connection, sql: string, values: unknown[], typeCast: unknown): MysqlQuery {
  return connection.query(arrayRows(sql, values, typeCast)) as MysqlQuery
}

/**
 * The session settings a query runs under, and how to put the caller's back: UTC for TIMESTAMP
 * values, and a long `net_write_timeout` (a reader held by backpressure is not dropped by the server).
 */
export async function utcSession(connection: Connection, writeTimeoutSeconds: number): Promise<{ restore(): Promise<void>; serverId: string }> {
  const [saved] = (await run(
    connection,
    'select @@session.time_zone as tz, @@session.net_write_timeout as wt, @@server_id as id, @@hostname as host',
  )) as Array<{
    tz: string
    wt: number | string
    id: number | string
    host: string
  }>
  await run(connection, "set session time_zone = '+00:00', session net_write_timeout = ?", [writeTimeoutSeconds])
  return {
    restore: async () => void (await run(connection, 'set session time_zone = ?, session net_write_timeout = ?', [saved!.tz, Number(saved!.wt)])),
    serverId: `${saved!.id}@${saved!.host}`,
  }
}

/**
 * Ends the statement `held` runs, from another session (`KILL QUERY`): the server stops sending,
 * and the connection stays usable. Resolves false when that could not be done in `ms`.
 */
export async function killQuery(held: Held, ms: number, serverId: string): Promise<boolean> {
  const threadId = held.connection.threadId
  if (typeof threadId !== 'number') return false
  let side: { release(): void } | undefined
  const timer = new Promise<false>((resolve) => setTimeout(() => resolve(false), ms).unref())
  const kill = (async () => {
    const other = (side = await held.side())
    // Behind a load balancer the other session may be on another server, where the thread id is someone else's.
    const [here] = (await run(other.connection, 'select @@server_id as id, @@hostname as host')) as Array<{ id: number | string; host: string }>
    if (`${here!.id}@${here!.host}` !== serverId) return false
    await run(other.connection, `kill query ${threadId}`)
    return true
  })().catch(() => false)
  const done = await Promise.race([kill, timer])
  void kill.then(() => side?.release()) // (a side taken after the time was up is given back too)
  return done
}

/**
 * Rows of `query` for progress, on a session of their own: `exact` runs count(*), `estimate` reads
 * the optimizer's row estimate (EXPLAIN: the largest of its rows, rough for joins).
 */
export async function countRows(held: Held, query: string, params: unknown[], count: 'exact' | 'estimate'): Promise<number | undefined> {
  const side = await held.side()
  try {
    if (count === 'exact') {
      const [row] = (await run(side.connection, `select count(*) as n from (${query}) as stream_export_count`, params)) as Array<{ n: number | string }>
      return Number(row?.n)
    }
    const plan = (await run(side.connection, `explain ${query}`, params)) as Array<{ rows?: number | string | null }>
    const rows = plan.map((step) => Number(step.rows ?? 0)).filter(Number.isFinite)
    return rows.length === 0 ? undefined : Math.max(...rows)
  } finally {
    side.release()
  }
}
