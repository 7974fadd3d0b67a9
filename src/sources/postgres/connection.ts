import { ExportError, invalidOption } from '../../core/errors.js'
import pg from 'pg'
import { checkBoolean, checkExactlyOne, checkOneOf, checkPositiveInteger, checkString } from '../../core/options.js'

// Structural types: the caller's `pg` objects, without making `pg`'s types part of our API.

/** A `pg` Client or PoolClient (anything with `query(submittable)`). */
export interface PgClient {
  query(...args: never[]): unknown
  /** pg's returns nothing; a wrapper's promise (a transaction to end first) is awaited. */
  release?(error?: Error | boolean): void | Promise<void>
  end?(): Promise<void>
  escapeLiteral?(value: string): string
  on?(event: 'error', listener: (error: Error) => void): unknown
  removeListener?(event: 'error', listener: (error: Error) => void): unknown
}

/** A `pg` Pool. */
export interface PgPool {
  connect(): Promise<PgClient>
}

/**
 * What an export sets on its own database session, so that it cannot hurt the product beside it
 * (docs/operations.md). Set when the export takes its connection and put back as it was when it
 * gives it back: a caller's pooled connection keeps its own settings.
 */
export interface PostgresGuardOptions {
  /**
   * `statement_timeout`: the server cancels a statement running longer (ERR_SOURCE, the cause's
   * `code` `57014`). A cursor's clock restarts at each fetch of `batchSize` rows; a COPY is one
   * statement, timed whole. Default: the server's.
   */
  statementTimeoutMs?: number
  /** `lock_timeout`: the export gives up waiting for a lock after this long (`55P03`). Default: the server's. */
  lockTimeoutMs?: number
  /**
   * `idle_in_transaction_session_timeout`: the server ends the export's session if a transaction
   * of its idles this long between statements (a keyset export's pages, an incremental export's
   * transaction). A consumer stalled mid-cursor or mid-COPY keeps the session busy, not idle.
   * Default: the server's.
   */
  idleInTransactionTimeoutMs?: number
  /**
   * `application_name`, as pg_stat_activity shows the export's session. Default: the name the
   * connection already has (a pool's `application_name`), or `stream-export` when it has none.
   */
  applicationName?: string
  /**
   * `default_transaction_read_only`: a query that writes fails (`25006`) instead of writing.
   * Default true; inside a caller's transaction (`client`) it holds for transactions begun later only.
   */
  readOnly?: boolean
  /**
   * For a replica (`pool` or `connectionString` of one): the most its replay may be behind its
   * primary when the export starts, else the export is refused (ERR_SOURCE) before any row is read.
   * A primary has no lag. See docs/operations.md.
   */
  maxReplicaLagMs?: number
  /** What a replica further behind than `maxReplicaLagMs` gets: `'error'` (default) or `'warn'` (a process warning, `STREAM_EXPORT_REPLICA_LAG`; the export runs). */
  onReplicaLag?: 'error' | 'warn'
}

/** How a Postgres source gets its connection: exactly one of these (and the session's guards). */
export interface PostgresConnectionOptions extends PostgresGuardOptions {
  /** A client is taken for the export and released exactly once (destroyed if it failed). */
  pool?: PgPool
  /** Used as it is and never released: the export runs inside the caller's transaction or snapshot. */
  client?: PgClient
  /** The source opens its own connection and closes it at the end. */
  connectionString?: string
}

export interface Connection {
  client: PgClient
  /** Gives the connection back: releases a pool client (destroying it after an error), ends an own one. */
  release(error?: Error): Promise<void>
}

/** The option names of a connection and its guards, for a source's list of known options. */
export const CONNECTION_OPTION_NAMES: Record<keyof PostgresConnectionOptions, true> = {
  pool: true,
  client: true,
  connectionString: true,
  statementTimeoutMs: true,
  lockTimeoutMs: true,
  idleInTransactionTimeoutMs: true,
  applicationName: true,
  readOnly: true,
  maxReplicaLagMs: true,
  onReplicaLag: true,
}

/** The longest timeout PostgreSQL takes, in ms (2^31 - 1: about 24.8 days). */
export const MAX_TIMEOUT_MS = 2_147_483_647

/** Whether PostgreSQL keeps an application name as given: at most 63 bytes of printable ASCII (it turns the rest into '?'). */
export const isApplicationName = (name: string): boolean => /^[\x20-\x7e]{1,63}$/.test(name)

/** The guards of a source's options, checked (ERR_INVALID_OPTION), as plain data. */
export function checkGuards(options: PostgresGuardOptions): PostgresGuardOptions {
  const { statementTimeoutMs, lockTimeoutMs, idleInTransactionTimeoutMs, applicationName, readOnly } = options
  // (A larger one would fail at connect time instead.)
  for (const [name, value] of Object.entries({ statementTimeoutMs, lockTimeoutMs, idleInTransactionTimeoutMs })) {
    if (value === undefined) continue
    checkPositiveInteger(name, value)
    if (value > MAX_TIMEOUT_MS) invalidOption(name, `at most ${MAX_TIMEOUT_MS} (about 24.8 days)`, value)
  }
  if (applicationName !== undefined) {
    checkString('applicationName', applicationName)
    if (!isApplicationName(applicationName)) invalidOption('applicationName', 'at most 63 printable ASCII characters', applicationName)
  }
  if (readOnly !== undefined) checkBoolean('readOnly', readOnly)
  const { maxReplicaLagMs, onReplicaLag } = options
  if (maxReplicaLagMs !== undefined) checkPositiveInteger('maxReplicaLagMs', maxReplicaLagMs)
  if (onReplicaLag !== undefined) checkOneOf('onReplicaLag', onReplicaLag, ['error', 'warn'] as const)
  return { statementTimeoutMs, lockTimeoutMs, idleInTransactionTimeoutMs, applicationName, readOnly, maxReplicaLagMs, onReplicaLag }
}

export function checkConnection(options: PostgresConnectionOptions): void {
  checkGuards(options)
  checkExactlyOne(options, ['pool', 'client', 'connectionString'])
  if (options.pool !== undefined && typeof options.pool?.connect !== 'function') invalidOption('pool', 'a pg Pool', options.pool)
  if (options.client !== undefined && typeof options.client?.query !== 'function') invalidOption('client', 'a pg Client', options.client)
  if (options.connectionString !== undefined) checkString('connectionString', options.connectionString)
}

// A client whose backend dies emits 'error' besides failing the query; without a listener that
// would crash the process. The failure reaches the export through the query; this only listens.
const ignore = () => {}

// The session settings of the guards asked for (readOnly has a default; applicationName's is in guard()).
function guardSettings(options: PostgresGuardOptions): Array<[string, string | null]> {
  const { statementTimeoutMs, lockTimeoutMs, idleInTransactionTimeoutMs, applicationName, readOnly = true } = options
  const settings: Array<[string, string | null | undefined]> = [
    ['statement_timeout', statementTimeoutMs?.toString()],
    ['lock_timeout', lockTimeoutMs?.toString()],
    ['idle_in_transaction_session_timeout', idleInTransactionTimeoutMs?.toString()],
    ['application_name', applicationName ?? null],
    ['default_transaction_read_only', readOnly ? 'on' : undefined],
  ]
  return settings.filter((entry): entry is [string, string | null] => entry[1] !== undefined)
}

type Run = (text: string, values?: unknown[]) => Promise<{ rows: Array<Record<string, string>> }>

/**
 * Sets the guards on the session, and returns what puts the settings back as they were (read in
 * the same statement, before they change). Inside a transaction (pg's `getTransactionStatus()`
 * says `T`: a caller's, a shard worker's) both are for that transaction only, as `SET LOCAL`:
 * at session level, a caller's own `SET LOCAL` put back would outlive its transaction.
 */
async function guard(client: PgClient, options: PostgresGuardOptions): Promise<() => Promise<void>> {
  const settings = guardSettings(options)
  const run = (client.query as unknown as Run).bind(client)
  const local = (client as { getTransactionStatus?(): string | null }).getTransactionStatus?.() === 'T'
  // (Before anything is set: a refused replica leaves a caller's connection as it was.)
  if (options.maxReplicaLagMs !== undefined) await checkReplicaLag(run, options.maxReplicaLagMs, options.onReplicaLag ?? 'error')
  const old = settings.map(([name], i) => `current_setting('${name}') as s${i}`).join(', ')
  // Without an applicationName the session keeps the name its pool gave it, or is named `stream-export`.
  const set = settings
    .map(([name], i) => {
      const value = name === 'application_name' ? `coalesce($${2 * i + 2}, nullif(s${i}, ''), 'stream-export')` : `$${2 * i + 2}`
      return `set_config($${2 * i + 1}, ${value}, ${local})`
    })
    .join(', ')
  const { rows } = await run(`with old as materialized (select ${old}) select old.*, ${set} from old`, settings.flat())
  const before = settings.map(([name], i): [string, string] => [name, rows[0]![`s${i}`]!])
  return async () => {
    await run(`select ${before.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, ${local})`).join(', ')}`, before.flat())
  }
}

/**
 * A replica's replay lag: none when it has replayed all it received, else the time since the last
 * transaction it replayed committed on the primary (the usual measure; a primary has none).
 */
async function checkReplicaLag(run: Run, maxMs: number, onLag: 'error' | 'warn'): Promise<void> {
  const { rows } = await run(
    `select case when not pg_is_in_recovery() then null
       when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then '0'
       else floor(extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000)::text end as lag`,
  )
  const lag = rows[0]!.lag == null ? undefined : Number(rows[0]!.lag)
  if (lag === undefined || lag <= maxMs) return
  const message = `The replica is ${lag} ms behind its primary (maxReplicaLagMs: ${maxMs})`
  if (onLag === 'warn') return void process.emitWarning(`${message}: exporting what it has replayed`, { code: 'STREAM_EXPORT_REPLICA_LAG' })
  throw new ExportError('ERR_SOURCE', 'source', `${message}: nothing was exported`)
}

export async function connect(options: PostgresConnectionOptions): Promise<Connection> {
  if (options.client) {
    const { client } = options
    client.on?.('error', ignore)
    const restore = await guard(client, options).catch((error: unknown) => {
      client.removeListener?.('error', ignore)
      throw error
    })
    let released = false
    return {
      client,
      release: async () => {
        if (released) return
        released = true
        // The caller's own client: its settings are put back even after a failed export (a restore
        // that fails cannot fail the release: the connection's own error tells the caller).
        await restore().catch(() => {})
        client.removeListener?.('error', ignore)
      },
    }
  }
  if (options.pool) {
    const client = await options.pool.connect()
    client.on?.('error', ignore)
    const restore = await guard(client, options).catch(async (error: Error) => {
      client.removeListener?.('error', ignore)
      await client.release?.(error)
      throw error
    })
    let released = false
    return {
      client,
      release: async (error) => {
        if (released) return
        released = true
        // A connection given back healthy keeps nothing of ours; one that cannot is destroyed.
        const failure =
          error ??
          (await restore().then(
            () => undefined,
            (restoreError: Error) => restoreError,
          ))
        client.removeListener?.('error', ignore)
        // release(error) makes the pool destroy the connection instead of reusing it.
        await client.release?.(failure)
      },
    }
  }
  const client = new pg.Client({ connectionString: options.connectionString })
  client.on('error', ignore)
  await client.connect()
  await guard(client as unknown as PgClient, options).catch(async (error: unknown) => {
    await client.end().catch(() => {})
    throw error
  })
  let ended = false
  return {
    client: client as unknown as PgClient,
    release: async () => {
      if (ended) return
      ended = true
      await client.end().catch(() => {})
    },
  }
}

type Query = (text: string, values: unknown[]) => Promise<{ rows: Array<Record<string, unknown>> }>

/**
 * Row count of a query for progress: `exact` runs count(*), `estimate` reads the planner's
 * estimate. With a pool it runs on its own connection; otherwise on `client`.
 */
export async function countRows(options: {
  client: PgClient
  /** With a pool, the count runs on a connection of its own, under the same guards. */
  pool?: PgPool
  guards?: PostgresGuardOptions
  text: string
  values: unknown[]
  count: 'exact' | 'estimate'
}): Promise<number> {
  const { pool, text, values, count } = options
  const own = pool ? await connect({ pool, ...options.guards }) : undefined
  const client = own?.client ?? options.client
  let failure: Error | undefined
  try {
    const query = (client.query as unknown as Query).bind(client)
    if (count === 'exact') {
      const { rows } = await query(`select count(*) as n from (${text}) as stream_export_count`, values)
      return Number(rows[0]!.n) // count(*) returns one row
    }
    const { rows } = await query(`explain (format json) ${text}`, values)
    return (rows[0]!['QUERY PLAN'] as Array<{ Plan: { 'Plan Rows': number } }>)[0]!.Plan['Plan Rows'] // one plan
  } catch (error) {
    failure = error as Error
    throw error
  } finally {
    await own?.release(failure)
  }
}

/** A safely quoted identifier: `my "col"` -> `"my ""col"""`; `schema.table` quotes each part. */
export function quoteIdentifier(name: string, qualified = false): string {
  const parts = qualified ? name.split('.') : [name]
  return parts.map((part) => `"${part.replace(/"/g, '""')}"`).join('.')
}
