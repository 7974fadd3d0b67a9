import { ExportError, invalidOption } from '../errors.js'
import { checkColumns, checkObject, checkPositiveInteger, checkString } from '../options.js'
import { checkConnection, connect, quoteIdentifier, type PgClient, type PostgresConnectionOptions } from './postgres-connection.js'
import { postgresSource, type PostgresSource } from './postgres.js'

/**
 * Where an incremental export stopped: the snapshot its rows were read in and the transactions
 * at its edge (see docs/incremental.md). Plain JSON: store it as it is, pass it back as `after`.
 */
export interface IncrementalWatermark {
  version: 1
  /** The run's snapshot (`pg_snapshot` text, `xmin:xmax:xip,...`). */
  snapshot: string
  /** Transactions at or after the snapshot's xmin whose rows the run saw (64-bit ids, as text). */
  seen: string[]
}

export interface PostgresIncrementalSourceOptions extends Omit<PostgresConnectionOptions, 'client'> {
  /** Table (or `schema.table`) whose new and changed rows to export. */
  table: string
  /** Output order, e.g. `updated_at`; the key breaks ties. Default: the key. */
  orderBy?: string | string[]
  /** Primary key column(s). Default `id`. */
  key?: string | string[]
  /** The watermark of the previous run (`result.watermark`); undefined: every row. */
  after?: IncrementalWatermark
  /** Rows fetched per round trip on the row path. Default 1000. */
  batchSize?: number
}

/** An incremental Postgres source: `watermark` is the next run's `after`, once the source has started. */
export type PostgresIncrementalSource = PostgresSource & { readonly watermark: IncrementalWatermark | undefined }

// The 64-bit id of the transaction that wrote a row version: `xmin` is its low 32 bits, within
// 2^32 before the snapshot's next id. Frozen and bootstrap ids (below 3) are older than any run.
const NEXT_XID = '(select pg_snapshot_xmax(pg_current_snapshot())::text::bigint)'
const writer = (alias: string) =>
  `(case when ${alias}.xmin::text::bigint < 3 then 0 else ${NEXT_XID} - ((${NEXT_XID} - ${alias}.xmin::text::bigint) % 4294967296) end)`

function checkWatermark(after: unknown): asserts after is IncrementalWatermark {
  const w = after as Partial<IncrementalWatermark> | null
  const ok =
    typeof w === 'object' &&
    w !== null &&
    w.version === 1 &&
    typeof w.snapshot === 'string' &&
    /^\d+:\d+:[\d,]*$/.test(w.snapshot) &&
    Array.isArray(w.seen) &&
    w.seen.every((id) => typeof id === 'string' && /^\d+$/.test(id))
  if (!ok) invalidOption('after', 'the watermark of an earlier run (result.watermark)', after)
}

/**
 * The rows of a table written since the previous run, each row version exactly once across runs:
 * the rows whose writing transaction the previous run's snapshot did not see, found by
 * transaction id (late commits and savepoints included), read in one REPEATABLE READ snapshot
 * whose watermark the next run starts from. Deleted rows are not exported. See docs/incremental.md.
 *
 * @example exportStream({ source: postgresIncrementalSource({ pool, table: 'orders', orderBy: 'updated_at', after }), format: csv(), sink })
 */
export function postgresIncrementalSource(options: PostgresIncrementalSourceOptions): PostgresIncrementalSource {
  checkObject('options', options)
  if ((options as PostgresConnectionOptions).client !== undefined)
    invalidOption(
      'client',
      'undefined: the source reads in a snapshot of its own (give `pool` or `connectionString`)',
      (options as PostgresConnectionOptions).client,
    )
  checkConnection(options)
  const { table, key = 'id', after, batchSize = 1000 } = options
  checkString('table', table)
  const keys = checkColumns('key', key)
  const first = options.orderBy === undefined ? [] : checkColumns('orderBy', options.orderBy)
  const order = [...first, ...keys.filter((k) => !first.includes(k))]
  if (after !== undefined) checkWatermark(after)
  checkPositiveInteger('batchSize', batchSize)

  const from = `from ${quoteIdentifier(table, true)} as t`
  const orderBy = order.map((c) => `t.${quoteIdentifier(c)}`).join(', ')
  // Rows the previous run did not see: written by a transaction at or after its snapshot's xmin
  // (any it did not see is), and not by one it saw there.
  const since = after ? ` where ${writer('t')} >= $1::bigint and not (${writer('t')} = any($2::bigint[]))` : ''
  const values = after ? [after.snapshot.split(':')[0]!, `{${after.seen.join(',')}}`] : []
  let watermark: IncrementalWatermark | undefined

  // The source's connection: a REPEATABLE READ transaction whose snapshot the rows are read in and
  // the next watermark is taken from; rolled back (it only read) before the connection goes back.
  const open = async (): Promise<PgClient> => {
    const conn = await connect(options)
    const query = (text: string, params: unknown[] = []) =>
      (conn.client.query as unknown as (text: string, values: unknown[]) => Promise<{ rows: Array<Record<string, string>> }>).call(conn.client, text, params)
    try {
      await query('begin isolation level repeatable read read only')
      const [snapshot] = (await query(`select pg_current_snapshot()::text as snapshot, pg_snapshot_xmin(pg_current_snapshot())::text as xmin`)).rows
      const { rows } = await query(`select distinct ${writer('t')}::text as id ${from} where ${writer('t')} >= $1::bigint order by 1`, [snapshot!.xmin])
      watermark = { version: 1, snapshot: snapshot!.snapshot!, seen: rows.map((row) => row.id!) }
    } catch (error) {
      await conn.release(error as Error)
      throw new ExportError('ERR_SOURCE', 'source', `Cannot read the changes of ${table}: ${(error as Error).message}`, { cause: error })
    }
    let released = false
    return {
      query: (...args: never[]) => conn.client.query(...args),
      async release(error?: Error | boolean) {
        if (released) return
        released = true
        // A connection that failed (or was cut mid-COPY) is destroyed: the server rolls back.
        if (error) return conn.release(error instanceof Error ? error : new Error('released as failed'))
        await query('rollback').then(
          () => conn.release(),
          (rollbackError: Error) => conn.release(rollbackError),
        )
      },
    }
  }

  const source = postgresSource({ pool: { connect: open }, text: `select t.* ${from}${since} order by ${orderBy}`, values, batchSize })
  return Object.defineProperty(source, 'watermark', { get: () => watermark, enumerable: true }) as PostgresIncrementalSource
}
