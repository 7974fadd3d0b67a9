import { ExportError, invalidOption } from '../../core/errors.js'
import { checkColumns, checkObject, checkOneOf, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { checkConnection, checkGuards, CONNECTION_OPTION_NAMES, connect, quoteIdentifier, type PgClient, type PostgresConnectionOptions } from './connection.js'
import { postgresSource, type PostgresSource } from './query.js'

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
  /**
   * The system identifier of the cluster the run read (`pg_control_system()`, as text): absent
   * when the role may not read it, and in watermarks of earlier versions.
   */
  system?: string
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
  /**
   * What to do with an `after` that cannot come from this server's history: taken on another
   * cluster, or ahead of this server's transaction ids (a dump restored into a new cluster, a
   * copied state file, a failover to a server that was behind). `'error'`: reject with ERR_STATE
   * and export nothing. `'reexport'`: export every row, as a first run does, and return a
   * watermark of this server. Default `'error'`. See docs/incremental.md.
   */
  onForeignWatermark?: 'error' | 'reexport'
}

/** An incremental Postgres source: `watermark` is the next run's `after`, once the source has started. */
export type PostgresIncrementalSource = PostgresSource & { readonly watermark: IncrementalWatermark | undefined }

// The 64-bit id of the transaction that wrote a row version: `xmin` is its low 32 bits, within
// 2^32 before the snapshot's next id (a row is frozen before it is 2^31 transactions old). The ids
// below 3 (bootstrap, frozen before 9.4) are older than any run; a row frozen since keeps its
// xmin, and an epoch on is placed in the current epoch (see SAW, and docs/incremental.md).
const NEXT_XID = '(select pg_snapshot_xmax(pg_current_snapshot())::text::bigint)'
const writer = (alias: string) =>
  `(case when ${alias}.xmin::text::bigint < 3 then 0 else ${NEXT_XID} - ((${NEXT_XID} - ${alias}.xmin::text::bigint) % 4294967296) end)`

const OPTION_NAMES = optionNames<PostgresIncrementalSourceOptions & Pick<PostgresConnectionOptions, 'client'>>({
  table: true,
  orderBy: true,
  key: true,
  after: true,
  batchSize: true,
  onForeignWatermark: true,
  ...CONNECTION_OPTION_NAMES,
})
const WATERMARK_FIELDS = optionNames<IncrementalWatermark>({ version: true, snapshot: true, seen: true, system: true })

// A frozen row keeps its xmin (PostgreSQL 9.4 on): an epoch later, its writer as computed above is
// an id of this epoch, perhaps one of a transaction the snapshot does not see: running (in xip, or
// a subtransaction of one: still in progress), or not yet begun (xmax). Such an id is not "seen",
// or that transaction's rows would never be exported. The CASE keeps pg_xact_status from ids
// beyond the snapshot (an error: "in the future").
const SAW = `case when pg_visible_in_snapshot(w.id::text::xid8, pg_current_snapshot()) then pg_xact_status(w.id::text::xid8) = 'committed' else false end`

function checkWatermark(after: unknown): asserts after is IncrementalWatermark {
  const w = after as Partial<IncrementalWatermark> | null
  const ok =
    typeof w === 'object' &&
    w !== null &&
    Object.keys(w).every((field) => WATERMARK_FIELDS.has(field)) &&
    w.version === 1 &&
    typeof w.snapshot === 'string' &&
    /^\d+:\d+:[\d,]*$/.test(w.snapshot) &&
    Array.isArray(w.seen) &&
    w.seen.every((id) => typeof id === 'string' && /^\d+$/.test(id)) &&
    (w.system === undefined || (typeof w.system === 'string' && /^\d+$/.test(w.system)))
  if (!ok) invalidOption('after', 'the watermark of an earlier run (result.watermark)', after)
}

type Query = (text: string, values?: unknown[]) => Promise<{ rows: Array<Record<string, string>> }>

/**
 * The cluster's system identifier, or why the role may not read it (`pg_control_system()` is
 * PUBLIC by default; a provider or an administrator may revoke it). Asked outside a transaction,
 * which a refusal would abort.
 */
async function systemIdentifier(query: Query): Promise<string | Error> {
  try {
    const [{ id }] = (await query('select system_identifier::text as id from pg_control_system()')).rows as [{ id: string }]
    return id
  } catch (error) {
    // Insufficient privilege, no such function (a PostgreSQL-compatible server), not supported.
    if (['42501', '42883', '0A000'].includes((error as { code?: string }).code ?? '')) return error as Error
    throw error
  }
}

/**
 * Why `after` cannot belong to this server's history, or undefined when it can. A watermark of
 * this server ends at or below every later snapshot's xmax (the next transaction id, 64-bit); one
 * beyond it comes from a history this server does not have.
 */
function foreignReason(after: IncrementalWatermark, system: string | Error, xmax: string): string | undefined {
  if (after.system !== undefined && system instanceof Error)
    return `it was taken on the cluster with system identifier ${after.system}, and this role may not read this server's to check it (pg_control_system(): ${system.message}; grant it EXECUTE)`
  if (after.system !== undefined && after.system !== system)
    return `it was taken on the cluster with system identifier ${after.system}, and this server's is ${system as string} (another cluster: a dump restored into a new one, a copied state file)`
  const [, end] = after.snapshot.split(':') as [string, string, string]
  if (BigInt(end) > BigInt(xmax))
    return `its snapshot reaches transaction id ${end}, beyond this server's next one (${xmax}): it comes from another cluster, or from a history this server lost (a restore from a backup, a failover to a server that was behind; or this is a standby that has not replayed that far)`
  return undefined
}

/**
 * The rows of a table written since the previous run, each row version once across runs: the
 * rows whose writing transaction the previous run's snapshot did not see, found by transaction id
 * (late commits and savepoints included), read in one REPEATABLE READ snapshot whose watermark
 * the next run starts from. Deleted rows are not exported; a row frozen in an earlier epoch of
 * transaction ids (2^32) is exported once more each epoch. An `after` that cannot come from this
 * server (another cluster, ids ahead of the server's) is ERR_STATE unless `onForeignWatermark` is
 * `'reexport'`. See docs/incremental.md.
 *
 * @example exportStream({ source: postgresIncrementalSource({ pool, table: 'orders', orderBy: 'updated_at', after }), format: csv(), sink })
 */
export function postgresIncrementalSource(options: PostgresIncrementalSourceOptions): PostgresIncrementalSource {
  checkObject('options', options, OPTION_NAMES)
  if ((options as PostgresConnectionOptions).client !== undefined)
    invalidOption(
      'client',
      'undefined: the source reads in a snapshot of its own (give `pool` or `connectionString`)',
      (options as PostgresConnectionOptions).client,
    )
  checkConnection(options)
  const { table, key = 'id', after, batchSize = 1000, onForeignWatermark = 'error' } = options
  checkString('table', table)
  const keys = checkColumns('key', key)
  const first = options.orderBy === undefined ? [] : checkColumns('orderBy', options.orderBy)
  const order = [...first, ...keys.filter((k) => !first.includes(k))]
  if (after !== undefined) checkWatermark(after)
  checkPositiveInteger('batchSize', batchSize)
  checkOneOf('onForeignWatermark', onForeignWatermark, ['error', 'reexport'] as const)

  const from = `from ${quoteIdentifier(table, true)} as t`
  const orderBy = order.map((c) => `t.${quoteIdentifier(c)}`).join(', ')
  // Rows the previous run did not see: written by a transaction at or after its snapshot's xmin
  // (any it did not see is), and not by one it saw there. A foreign watermark re-exported turns
  // the filter off in the source's transaction: the query and its parameters are fixed here,
  // before the server can be asked.
  const since = after
    ? ` where (current_setting('stream_export.reexport', true) = 'on' or (${writer('t')} >= $1::bigint and not (${writer('t')} = any($2::bigint[]))))`
    : ''
  const values = after ? [after.snapshot.split(':')[0]!, `{${after.seen.join(',')}}`] : []
  let watermark: IncrementalWatermark | undefined

  // The source's connection: a REPEATABLE READ transaction whose snapshot the rows are read in and
  // the next watermark is taken from; rolled back (it only read) before the connection goes back.
  const open = async (): Promise<PgClient> => {
    const conn = await connect(options)
    const query: Query = (text, params = []) => (conn.client.query as unknown as Query).call(conn.client, text, params)
    const rollback = () =>
      query('rollback').then(
        () => conn.release(),
        (rollbackError: Error) => conn.release(rollbackError),
      )
    let refusal: ExportError | undefined
    try {
      const system = await systemIdentifier(query)
      await query('begin isolation level repeatable read read only')
      const [snapshot] = (
        await query(`select s::text as text, pg_snapshot_xmin(s)::text as xmin, pg_snapshot_xmax(s)::text as xmax from pg_current_snapshot() as s`)
      ).rows as [{ text: string; xmin: string; xmax: string }]
      const foreign = after && foreignReason(after, system, snapshot.xmax)
      if (foreign !== undefined && onForeignWatermark === 'error') {
        refusal = new ExportError(
          'ERR_STATE',
          'state',
          `The watermark given for ${table} cannot come from this server: ${foreign}. Nothing was exported. To export the table in full and go on from this server, pass onForeignWatermark: 'reexport' (from the CLI: remove the feed's watermark from --since-state).`,
          { cause: system instanceof Error && after?.system !== undefined ? system : undefined },
        )
      } else {
        if (foreign !== undefined) await query(`select set_config('stream_export.reexport', 'on', true)`)
        const { rows } = await query(
          `select id::text from (select distinct ${writer('t')} as id ${from} where ${writer('t')} >= $1::bigint) as w where ${SAW} order by w.id`,
          [snapshot.xmin],
        )
        watermark = { version: 1, snapshot: snapshot.text, seen: rows.map((row) => row.id!), ...(typeof system === 'string' ? { system } : {}) }
      }
    } catch (error) {
      await conn.release(error as Error)
      throw new ExportError('ERR_SOURCE', 'source', `Cannot read the changes of ${table}: ${(error as Error).message}`, { cause: error })
    }
    if (refusal) {
      await rollback()
      throw refusal
    }
    let released = false
    return {
      query: (...args: never[]) => conn.client.query(...args),
      async release(error?: Error | boolean) {
        if (released) return
        released = true
        // A connection that failed (or was cut mid-COPY) is destroyed: the server rolls back.
        if (error) return conn.release(error instanceof Error ? error : new Error('released as failed'))
        await rollback()
      },
    }
  }

  // (The same guards again: the inner source sets them on the connection it is given too.)
  const source = postgresSource({ pool: { connect: open }, ...checkGuards(options), text: `select t.* ${from}${since} order by ${orderBy}`, values, batchSize })
  return Object.defineProperty(source, 'watermark', { get: () => watermark, enumerable: true }) as PostgresIncrementalSource
}
