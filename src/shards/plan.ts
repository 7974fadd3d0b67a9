import { ExportError } from '../core/errors.js'
import { checkColumns, checkObject, checkPositiveInteger, checkString, optionNames } from '../core/options.js'
import { checkConnection, CONNECTION_OPTION_NAMES, connect, quoteIdentifier, type PostgresConnectionOptions } from '../sources/postgres/connection.js'
import { refuseNullKeys } from '../sources/postgres/null-keys.js'
import { losslessTypes } from '../sources/postgres/types.js'

// Blocks sampled at least: with 1,000 blocks, 8 ranges of 125 blocks each come within ~10% of even.
const SAMPLE_BLOCKS = 1000

export interface PlanShardsOptions extends PostgresConnectionOptions {
  /** Table (or `schema.table`) to split. */
  table: string
  /** Key column(s): unique, indexed, never NULL (a key holding NULLs is refused: no range holds those rows); the ranges are ranges of it. Default `id`. */
  key?: string | string[]
  /** How many ranges. */
  shards: number
  /**
   * Rows sampled to place the edges (`TABLESAMPLE SYSTEM`: whole blocks, at least 1,000 of them;
   * never a full scan of a big table). Default 20,000.
   */
  sampleRows?: number
}

const PLAN_SHARDS_OPTION_NAMES = optionNames<PlanShardsOptions>({
  table: true,
  key: true,
  shards: true,
  sampleRows: true,
  ...CONNECTION_OPTION_NAMES,
})

/**
 * A contiguous range of keys: the rows with `after < key <= until` (no `after`: from the first
 * row; no `until`: to the last). Pass both to `postgresKeysetSource`. Keys are values, or arrays
 * for a composite key.
 */
export interface ShardRange {
  index: number
  after?: unknown
  until?: unknown
}

/**
 * Splits a table into `shards` contiguous key ranges of similar row counts, cheaply: the edges are
 * quantiles of a block sample of the keys (about `sampleRows` rows from at least 1,000 blocks; the
 * whole table when it is smaller), so skewed keys still give even ranges. Each row is in exactly one range whatever the
 * sample (the ranges meet edge to edge, the first and the last are open); a sample only makes
 * them less even. Fewer ranges than asked come back when the table has fewer distinct keys.
 */
export async function planShards(options: PlanShardsOptions): Promise<ShardRange[]> {
  return planKeyRanges(options, true)
}

/**
 * planShards, for a reader that has checked its own rows for NULL keys (`refuseNulls` false: a
 * sharded source reading a query over the table): the edges are placed among the keys that are not NULL.
 */
export async function planKeyRanges(options: PlanShardsOptions, refuseNulls: boolean): Promise<ShardRange[]> {
  checkObject('options', options, PLAN_SHARDS_OPTION_NAMES)
  checkConnection(options)
  const { table, key = 'id', shards, sampleRows = 20_000 } = options
  checkString('table', table)
  const keys = checkColumns('key', key)
  checkPositiveInteger('shards', shards)
  checkPositiveInteger('sampleRows', sampleRows)
  if (shards === 1) return [{ index: 0 }]

  const name = quoteIdentifier(table, true)
  const keyList = keys.map((k) => quoteIdentifier(k)).join(', ')
  const descending = keys.map((k) => `${quoteIdentifier(k)} desc`).join(', ')
  const notNull = keys.map((k) => `${quoteIdentifier(k)} is not null`).join(' and ')
  const conn = await connect(options)
  type Result = { rows: unknown[][] }
  const query = (text: string, values: unknown[] = []) =>
    (conn.client.query as unknown as (config: object) => Promise<Result>).call(conn.client, { text, values, rowMode: 'array', types: losslessTypes() })
  try {
    // A key holding NULLs would lose their rows: no range holds them.
    if (refuseNulls) await refuseNullKeys(conn.client, { table, relation: `select * from ${name}`, values: [], keys })
    // The sample: a percentage of the table's blocks, for about `sampleRows` rows by the planner's
    // estimate (never analyzed: ~50 rows a block), and at least SAMPLE_BLOCKS blocks: each block is
    // a run of neighbouring keys, so the edges are as even as the blocks are many.
    const [[rowEstimate, blocks]] = (
      await query(
        `select case when reltuples > 0 then reltuples::float8 else pg_relation_size(oid)::float8 / current_setting('block_size')::float8 * 50 end, ` +
          `pg_relation_size(oid)::float8 / current_setting('block_size')::float8 from pg_class where oid = $1::regclass`,
        [table],
      )
    ).rows as [[number, number]]
    const percent = rowEstimate > 0 && blocks > 0 ? Math.min(100, Math.max((100 * sampleRows) / rowEstimate, (100 * SAMPLE_BLOCKS) / blocks)) : 100
    const sample = percent >= 100 ? name : `${name} tablesample system (${percent})`
    // The last key of each of `shards` equal tiles of the sorted sample: the upper edges.
    const { rows } = await query(
      `select ${keyList} from (select ${keyList}, row_number() over (partition by tile order by ${descending}) as last ` +
        `from (select ${keyList}, ntile($1) over (order by ${keyList}) as tile from (select ${keyList} from ${sample} where ${notNull}) as s) as t) as e ` +
        `where last = 1 order by ${keyList}`,
      [shards],
    )
    const edges = rows.slice(0, -1).map((row) => (Array.isArray(key) ? row : row[0]))
    const ranges: ShardRange[] = []
    for (let i = 0; i <= edges.length; i++) {
      ranges.push({ index: i, ...(i > 0 ? { after: edges[i - 1] } : {}), ...(i < edges.length ? { until: edges[i] } : {}) })
    }
    return ranges
  } catch (error) {
    if (error instanceof ExportError) throw error
    throw new ExportError('ERR_SOURCE', 'source', `Cannot plan the shards of ${table}: ${(error as Error).message}`, { cause: error })
  } finally {
    await conn.release()
  }
}
