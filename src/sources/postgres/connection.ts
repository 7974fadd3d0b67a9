import { invalidOption } from '../../core/errors.js'
import pg from 'pg'
import { checkExactlyOne, checkString } from '../../core/options.js'

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

/** How a Postgres source gets its connection: exactly one of these. */
export interface PostgresConnectionOptions {
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

export function checkConnection(options: PostgresConnectionOptions): void {
  checkExactlyOne(options, ['pool', 'client', 'connectionString'])
  if (options.pool !== undefined && typeof options.pool?.connect !== 'function') invalidOption('pool', 'a pg Pool', options.pool)
  if (options.client !== undefined && typeof options.client?.query !== 'function') invalidOption('client', 'a pg Client', options.client)
  if (options.connectionString !== undefined) checkString('connectionString', options.connectionString)
}

// A client whose backend dies emits 'error' besides failing the query; without a listener that
// would crash the process. The failure reaches the export through the query; this only listens.
const ignore = () => {}

export async function connect(options: PostgresConnectionOptions): Promise<Connection> {
  if (options.client) {
    const { client } = options
    client.on?.('error', ignore)
    return {
      client,
      release: () => {
        client.removeListener?.('error', ignore)
        return Promise.resolve()
      },
    }
  }
  if (options.pool) {
    const client = await options.pool.connect()
    client.on?.('error', ignore)
    let released = false
    return {
      client,
      release: (error) => {
        if (released) return Promise.resolve()
        released = true
        client.removeListener?.('error', ignore)
        // release(error) makes the pool destroy the connection instead of reusing it.
        return Promise.resolve(client.release?.(error))
      },
    }
  }
  const client = new pg.Client({ connectionString: options.connectionString })
  client.on('error', ignore)
  await client.connect()
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
export async function countRows(options: { client: PgClient; pool?: PgPool; text: string; values: unknown[]; count: 'exact' | 'estimate' }): Promise<number> {
  const { pool, text, values, count } = options
  const client = pool ? await pool.connect() : options.client
  try {
    const query = (client.query as unknown as Query).bind(client)
    if (count === 'exact') {
      const { rows } = await query(`select count(*) as n from (${text}) as stream_export_count`, values)
      return Number(rows[0]!.n) // count(*) returns one row
    }
    const { rows } = await query(`explain (format json) ${text}`, values)
    return (rows[0]!['QUERY PLAN'] as Array<{ Plan: { 'Plan Rows': number } }>)[0]!.Plan['Plan Rows'] // one plan
  } finally {
    if (pool) await client.release?.()
  }
}

/** A safely quoted identifier: `my "col"` -> `"my ""col"""`; `schema.table` quotes each part. */
export function quoteIdentifier(name: string, qualified = false): string {
  const parts = qualified ? name.split('.') : [name]
  return parts.map((part) => `"${part.replace(/"/g, '""')}"`).join('.')
}
