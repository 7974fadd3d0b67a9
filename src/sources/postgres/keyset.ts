import { invalidOption } from '../../core/errors.js'
import { checkColumns, checkExactlyOne, checkObject, checkOneOf, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import {
  checkConnection,
  checkGuards,
  CONNECTION_OPTION_NAMES,
  connect,
  countRows,
  quoteIdentifier,
  type Connection,
  type PostgresConnectionOptions,
} from './connection.js'
import { uniqueColumnNames } from '../column-names.js'
import { refuseNullKeys } from './null-keys.js'
import { keysetPages, type KeysetReadable } from '../keyset-pages.js'
import { losslessTypes, pgColumnType, type PgField } from './types.js'
import type { ColumnType } from '../../core/types.js'

export interface PostgresKeysetSourceOptions extends PostgresConnectionOptions {
  /** Table (or `schema.table`) to export. Give `table` or `select`. */
  table?: string
  /** A query to page through, e.g. `select id, email from users where active`. Its result must include the key columns. */
  select?: string
  /** Parameters of `select` (`$1`, `$2`...). */
  values?: unknown[]
  /** Key column(s): unique, indexed and never NULL (a key holding NULLs is refused: those rows would be lost); rows come out in key order. Default `id`. */
  key?: string | string[]
  /** Rows per page (one query each). Default 1000. Memory: up to 2 pages of rows buffered. */
  batchSize?: number
  /** Resume after this key (a `checkpoint` of an earlier run): a value, or an array for a composite key. */
  after?: unknown
  /** Stop at this key, inclusive (a shard's upper edge, see `planShards`): a value, or an array for a composite key. */
  until?: unknown
  /** Fill `totalRows` for progress: `exact` (count(*)) or `estimate` (planner). Counts rows after `after`. */
  count?: 'exact' | 'estimate'
}

/** A keyset-paged Postgres source; `checkpoint` is a value, or an array for a composite key. */
export type PostgresKeysetSource = KeysetReadable<Record<string, unknown>>

const POSTGRES_KEYSET_SOURCE_OPTION_NAMES = optionNames<PostgresKeysetSourceOptions>({
  table: true,
  select: true,
  values: true,
  key: true,
  batchSize: true,
  after: true,
  until: true,
  count: true,
  ...CONNECTION_OPTION_NAMES,
})

/**
 * Pages through a table or query with `WHERE (key) > (last) ORDER BY key LIMIT n`: no long
 * transaction or open cursor, constant time per page with an index on the key, and a `checkpoint`
 * to resume from after a crash.
 */
export function postgresKeysetSource(options: PostgresKeysetSourceOptions): PostgresKeysetSource {
  checkObject('options', options, POSTGRES_KEYSET_SOURCE_OPTION_NAMES)
  checkConnection(options)
  const { table, select, values: given = [], key = 'id', batchSize = 1000, after, until, count } = options
  checkExactlyOne(options, ['table', 'select'])
  if (table !== undefined) checkString('table', table)
  if (select !== undefined) checkString('select', select)
  if (!Array.isArray(given)) invalidOption('values', 'an array', given)
  const keys = checkColumns('key', key)
  checkPositiveInteger('batchSize', batchSize)
  const composite = Array.isArray(key)
  for (const [name, edge] of [
    ['after', after],
    ['until', until],
  ] as const) {
    if (edge !== undefined && composite && (!Array.isArray(edge) || edge.length !== keys.length))
      invalidOption(name, `an array of ${keys.length} key values`, edge)
  }
  if (count !== undefined) checkOneOf('count', count, ['exact', 'estimate'] as const)

  const keyList = keys.map((k) => quoteIdentifier(k)).join(', ')
  const keyValues = (k: unknown): unknown[] => (composite ? (k as unknown[]) : [k])
  const relation = table !== undefined ? `select * from ${quoteIdentifier(table, true)}` : select!
  // Up to a key: `(k1, k2) <= (...)` around the rows, its values after the caller's.
  const placeholders = (from: number) => keys.map((_, i) => `$${from + i + 1}`).join(', ')
  const base = until === undefined ? relation : `select * from (${relation}) as stream_export_range where (${keyList}) <= (${placeholders(given.length)})`
  const values = until === undefined ? given : [...given, ...keyValues(until)]
  // Rows after a key: `(k1, k2) > ($n+1, $n+2)`, a row comparison an index on (k1, k2) serves.
  const afterKey = ` where (${keyList}) > (${placeholders(values.length)})`
  const pageQuery = (from: boolean) =>
    `select * from (${base}) as stream_export_page${from ? afterKey : ''} order by ${keyList} limit $${values.length + (from ? keys.length : 0) + 1}`
  const keyOf = (row: Record<string, unknown>): unknown => (composite ? keys.map((k) => row[k]) : row[keys[0]!])

  const types = losslessTypes()
  let ready: Promise<Connection> | undefined
  let counted: Promise<number | undefined> = Promise.resolve(undefined)

  let connected = false
  let columns: ColumnType[] | undefined // from the first page's row description
  const start = async (): Promise<Connection> => {
    const connection = await connect(options)
    connected = true
    try {
      // Before the first page: a key holding NULLs would lose their rows (see refuseNullKeys).
      await refuseNullKeys(connection.client, { table, relation, values: given, keys })
    } catch (error) {
      await connection.release(error as Error)
      throw error
    }
    if (count) {
      const from = after !== undefined
      const text = from ? `select * from (${base}) as stream_export_count${afterKey}` : base
      counted = countRows({
        client: connection.client,
        pool: options.pool,
        guards: checkGuards(options),
        text,
        values: from ? [...values, ...keyValues(after)] : values,
        count,
      })
      // On a single connection the count runs before the first page.
      if (!options.pool) await counted.catch(() => {})
    }
    return connection
  }

  const stream = keysetPages<Record<string, unknown>>({
    batchSize,
    after,
    keyOf,
    async fetchPage(last) {
      const { client } = await (ready ??= start())
      const from = last !== undefined
      const params = from ? [...values, ...keyValues(last), batchSize] : [...values, batchSize]
      const query = client.query as unknown as (config: object) => Promise<{ rows: unknown[][]; fields: PgField[] }>
      // Array rows, named here: a repeated column name (a join) must not overwrite the earlier column.
      const { rows, fields } = await query.call(client, { text: pageQuery(from), values: params, types, rowMode: 'array' })
      const names = uniqueColumnNames(fields.map((field) => field.name))
      columns ??= fields.map((field, i) => pgColumnType({ ...field, name: names[i]! }))
      return rows.map((values) => {
        const row: Record<string, unknown> = {}
        for (let i = 0; i < names.length; i++) row[names[i]!] = values[i]
        return row
      })
    },
    // A failed query may have left the connection unusable: the pool then replaces it. A
    // connection still awaited from a busy pool is not waited for (the export can be aborted
    // while it waits): it is given back as soon as it arrives.
    release: async (failure) => {
      if (!ready) return
      const released = ready.then(
        (conn) => conn.release(failure),
        () => {},
      )
      if (connected) await released
    },
  })
  stream.columnTypes = () => columns
  stream.countRows = async () => {
    await (ready ??= start())
    return counted
  }
  return stream
}
