import { describe, ExportError, invalidOption, toExportError } from '../core/errors.js'
import { checkColumns, checkExactlyOne, checkObject, checkPositiveInteger, checkString } from '../core/options.js'
import { checkGuards, connect, countRows, quoteIdentifier, type PgPool, type PostgresGuardOptions } from '../sources/postgres/connection.js'
import { refuseNullKeys } from '../sources/postgres/null-keys.js'
import { planKeyRanges } from './plan.js'
import { checkPlainData, ShardedReadable, shardOptions, type ShardSource } from './readable.js'

export interface PostgresShardedSourceOptions extends PostgresGuardOptions {
  /** Each shard opens its own connection with it, and so does the coordinator. Give this or `pool`. */
  connectionString?: string
  /**
   * A `pg` Pool: the coordinator takes a client from it; each shard, on its own thread, opens a
   * connection with the pool's options (which must not hold functions, such as a password callback).
   */
  pool?: PgPool & { options?: object }
  /** The table to split into key ranges (and to read, unless `select` is given). */
  table: string
  /** A query over `table` to read instead of all of it; its result must include the key columns. */
  select?: string
  /** Parameters of `select` (`$1`, `$2`...). */
  values?: unknown[]
  /** Key column(s): unique, indexed and never NULL in the rows read (else refused: those rows would be lost); the output is in key order. Default `id`. */
  key?: string | string[]
  /** How many key ranges, each read on a worker thread with its own connection. Default: one per core. */
  shards?: number
  /** Rows per round trip of each shard's cursor (when the rows are not written by COPY). Default 1000. */
  batchSize?: number
  /** Rows sampled to plan the ranges (see `planShards`). Default 20,000. */
  sampleRows?: number
  /** Fill `totalRows` for progress, in the export's snapshot: `exact` (count(*)) or `estimate` (planner). */
  count?: 'exact' | 'estimate'
  /**
   * Bytes of each shard's output held in memory before the rest of what it read ahead of its turn
   * waits in a temp file. Default 8 MiB.
   */
  bufferBytes?: number
  /**
   * Folder under which those temp files are kept, in `stream-export-spill-<uid>/<pid>-<random>/`
   * (an export's removed when it ends, the process's when it exits; a killed process's by the next
   * sharded export under the same folder: docs/errors.md). Default: the system's temp folder.
   */
  tempDir?: string
}

/** A sharded Postgres source (see `postgresShardedSource`). */
export type PostgresShardedSource = ShardedReadable

/**
 * Reads one table as `shards` key ranges at once, each on a worker thread with its own connection,
 * all in ONE snapshot (a coordinating REPEATABLE READ transaction exports it with
 * `pg_export_snapshot()`; each shard imports it with `SET TRANSACTION SNAPSHOT`), and hands the
 * rows on in key order: the output is byte for byte what one cursor over the table would give.
 * With `csv()` or `jsonl()` (no transform) the shards also encode (or let PostgreSQL write) the
 * rows, so decoding and encoding run on every core.
 */
export function postgresShardedSource(options: PostgresShardedSourceOptions): PostgresShardedSource {
  checkObject('options', options)
  checkExactlyOne(options, ['pool', 'connectionString'])
  const { pool, connectionString, table, select, values = [], key = 'id', batchSize = 1000, sampleRows = 20_000 } = options
  const { shards, bufferBytes, tempDir, count } = shardOptions(options)
  if (pool !== undefined && typeof pool?.connect !== 'function') invalidOption('pool', 'a pg Pool', pool)
  if (connectionString !== undefined) checkString('connectionString', connectionString)
  checkString('table', table)
  if (select !== undefined) checkString('select', select)
  if (!Array.isArray(values)) invalidOption('values', 'an array', values)
  const keys = checkColumns('key', key)
  checkPositiveInteger('batchSize', batchSize)
  checkPositiveInteger('sampleRows', sampleRows)
  const connection = connectionString ?? workerConfig(pool!)
  const guards = checkGuards(options)
  checkPlainData('values', values, 'an array of plain values')

  const keyList = keys.map((k) => quoteIdentifier(k)).join(', ')
  const relation = select ?? `select * from ${quoteIdentifier(table, true)}`
  const keyValues = (edge: unknown): unknown[] => (Array.isArray(key) ? (edge as unknown[]) : [edge])
  const placeholders = (from: number) => keys.map((_, i) => `$${from + i + 1}`).join(', ')
  /** The query of the rows with after < key <= until, in key order. */
  const rangeQuery = (after: unknown, until: unknown): { text: string; values: unknown[] } => {
    const params = [...values]
    const conditions: string[] = []
    for (const [edge, operator] of [
      [after, '>'],
      [until, '<='],
    ] as const) {
      if (edge === undefined) continue
      conditions.push(`(${keyList}) ${operator} (${placeholders(params.length)})`)
      params.push(...keyValues(edge))
    }
    const where = conditions.length > 0 ? ` where ${conditions.join(' and ')}` : ''
    return { text: `select * from (${relation}) as stream_export_shard${where} order by ${keyList}`, values: params }
  }

  return new ShardedReadable({
    encodes: true,
    bufferBytes,
    tempDir,
    async plan() {
      const conn = await connect(pool ? { pool, ...guards } : { connectionString: connectionString!, ...guards })
      const query = conn.client.query.bind(conn.client) as unknown as (text: string) => Promise<{ rows: Array<Record<string, unknown>> }>
      // The coordinator's transaction holds the snapshot until every shard has imported it.
      const release = async (error?: Error) => {
        if (!error) await query('commit').catch(() => {})
        await conn.release(error)
      }
      try {
        // Each shard opens a connection: refused before any does when the server cannot take them.
        await refuseShardsBeyondServer(query, shards)
        await query('begin isolation level repeatable read read only')
        const snapshot = String((await query('select pg_export_snapshot() as id')).rows[0]!.id)
        // A key holding NULLs in the rows read would lose them (no range holds them): refused.
        await refuseNullKeys(conn.client, { table: select === undefined ? table : undefined, relation, values, keys })
        const ranges = await planKeyRanges({ client: conn.client, table, key, shards, sampleRows }, false)
        const total = count ? countRows({ client: conn.client, guards, text: relation, values, count }) : undefined
        const sources: ShardSource[] = ranges.map(({ after, until }) => ({
          kind: 'postgres' as const,
          connection,
          snapshot,
          batchSize,
          guards,
          ...rangeQuery(after, until),
        }))
        return { sources, total, release }
      } catch (error) {
        await release(error as Error)
        throw toExportError(error, 'ERR_SOURCE', 'source')
      }
    },
  })
}

/**
 * Refuses (ERR_INVALID_OPTION) more shards than the server can still connect: `max_connections`,
 * less the slots it keeps for superusers (`superuser_reserved_connections`, and from PostgreSQL 16
 * `reserved_connections`) unless this user is one, less the client backends connected now (this
 * one among them). Another user's backends show no `backend_type` to a user without
 * pg_read_all_stats: every such backend in a database counts (an autovacuum worker too, so the
 * limit errs low). The server may still fill up meanwhile: a shard that cannot connect fails the
 * export, naming it.
 */
async function refuseShardsBeyondServer(query: (text: string) => Promise<{ rows: Array<Record<string, unknown>> }>, shards: number): Promise<void> {
  const { rows } = await query(
    `select current_setting('max_connections')::int as max, case when current_setting('is_superuser') = 'on' then 0 else ` +
      `current_setting('superuser_reserved_connections')::int + coalesce(current_setting('reserved_connections', true), '0')::int end as reserved, ` +
      `(select count(*)::int from pg_stat_activity where backend_type = 'client backend' or (backend_type is null and datid is not null)) as used`,
  )
  const { max, reserved, used } = rows[0] as Record<'max' | 'reserved' | 'used', number>
  const free = Math.max(0, max - reserved - used)
  if (shards <= free) return
  throw new ExportError(
    'ERR_INVALID_OPTION',
    'options',
    `Expected \`shards\` to be at most ${free} (the server's max_connections ${max}, less ${reserved} reserved and ${used} in use), ` +
      `got ${describe(shards)}: each shard opens a connection of its own; lower \`shards\` or raise max_connections`,
  )
}

/** The connection options of a pg Pool, as plain data a worker thread can take. */
function workerConfig(pool: { options?: object }): Record<string, unknown> {
  const config = Object.fromEntries(Object.entries(pool.options ?? {}).filter(([, value]) => typeof value !== 'function' && value !== undefined))
  const password = (pool.options as { password?: unknown } | undefined)?.password
  try {
    if (typeof password === 'function') throw new Error('a password callback')
    return structuredClone(config)
  } catch {
    return invalidOption('pool', 'a pg Pool whose options can be sent to worker threads (no password callback), or pass connectionString', pool)
  }
}
