import { ExportError, invalidOption } from '../../core/errors.js'
import { checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import type { ColumnType } from '../../core/types.js'
import { uniqueColumnNames } from '../column-names.js'
import { keysetPages, type KeysetReadable } from '../keyset-pages.js'
import { arrayRows, checkMysqlClient, countRows, hold, run, type Held, type MysqlConnectionLike, type MysqlPoolLike, utcSession } from './connection.js'
import { bindable, castFor, mysqlColumnType, type MysqlField, type ZeroDates } from './types.js'

export interface MysqlKeysetSourceOptions {
  pool?: MysqlPoolLike
  connection?: MysqlConnectionLike
  /** A table to read whole (`db.table` or `table`)... */
  table?: string
  /** ...or a SELECT to page through (its rows must hold the key columns), with `?` placeholders for `params`. */
  query?: string
  params?: unknown[]
  /** The key column, or columns (a composite key, compared in order): unique, and never NULL. Default `id`. */
  key?: string | string[]
  /** Rows per page. Default 1000. */
  batchSize?: number
  /** The key to continue after (a `checkpoint`; an array for a composite key). */
  after?: unknown
  /** The last key to export (inclusive): a shard's range. */
  until?: unknown
  zeroDates?: ZeroDates
  /** Fill `totalRows` for progress (the rows after `after`), on a session of its own: `exact` (count(*)) or `estimate` (EXPLAIN). */
  count?: 'exact' | 'estimate'
}

const NAMES = optionNames<MysqlKeysetSourceOptions>({
  pool: true,
  connection: true,
  table: true,
  query: true,
  params: true,
  key: true,
  batchSize: true,
  after: true,
  until: true,
  zeroDates: true,
  count: true,
})

/** A MySQL keyset-paged source; `checkpoint` is a key value, or an array for a composite key. */
export type MysqlKeysetSource = KeysetReadable<Record<string, unknown>>

/** `name` or `db.name` quoted for MySQL. */
export function quoteMysql(name: string, qualified = false): string {
  const parts = qualified ? name.split('.') : [name]
  if (parts.some((part) => part === '' || part.includes('\0'))) invalidOption('table', 'a table name (`name` or `db.name`)', name)
  return parts.map((part) => `\`${part.replaceAll('`', '``')}\``).join('.')
}

/**
 * `(k1, k2) > (?, ?)` spelled out (`k1 > ? OR (k1 = ? AND k2 > ?)`), which MariaDB and MySQL serve
 * from an index on (k1, k2): the values in the order of its placeholders.
 */
function after(keys: readonly string[], values: readonly unknown[]): { sql: string; values: unknown[] } {
  const terms: string[] = []
  const bound: unknown[] = []
  for (let i = 0; i < keys.length; i++) {
    terms.push(`(${[...keys.slice(0, i).map((key) => `${key} = ?`), `${keys[i]} > ?`].join(' and ')})`)
    bound.push(...values.slice(0, i), values[i])
  }
  return { sql: `(${terms.join(' or ')})`, values: bound }
}

/**
 * Pages through a table or query with `WHERE key > last ORDER BY key LIMIT n` (a composite key
 * compared in order): no long transaction or open result, constant time per page with an index on
 * the key, and a `checkpoint` to resume from after a crash. One connection for every page; values
 * as `mysqlSource` reads them.
 */
export function mysqlKeysetSource(options: MysqlKeysetSourceOptions): MysqlKeysetSource {
  checkObject('options', options, NAMES)
  checkMysqlClient(options)
  const { table, query, params = [], key = 'id', batchSize = 1000, after: from, until, zeroDates = 'error', count } = options
  if (count !== undefined && count !== 'exact' && count !== 'estimate') invalidOption('count', "'exact' or 'estimate'", count)
  if ((table === undefined) === (query === undefined)) invalidOption('table', 'a table name, or `query` instead (one of them)', table)
  if (table !== undefined) checkString('table', table)
  if (query !== undefined) checkString('query', query)
  if (!Array.isArray(params)) invalidOption('params', 'an array', params)
  const keys = typeof key === 'string' ? [key] : key
  if (!Array.isArray(keys) || keys.length === 0 || keys.some((k) => typeof k !== 'string' || k === ''))
    invalidOption('key', 'a column name or an array of them', key)
  checkPositiveInteger('batchSize', batchSize)
  const composite = Array.isArray(key)
  for (const [name, edge] of [
    ['after', from],
    ['until', until],
  ] as const)
    if (edge !== undefined && composite && (!Array.isArray(edge) || edge.length !== keys.length))
      invalidOption(name, `an array of ${keys.length} key values`, edge)
  if (zeroDates !== 'error' && zeroDates !== 'null') invalidOption('zeroDates', "'error' or 'null'", zeroDates)

  const quoted = keys.map((k) => quoteMysql(k))
  // (Bound as the server parses them: a DATETIME or TIMESTAMP key's text without its `T` and offset.)
  const valuesOf = (k: unknown): unknown[] => (composite ? (k as unknown[]) : [k]).map((value, i) => bindable(value, fields[names.indexOf(keys[i]!)]))
  const relation = table !== undefined ? `select * from ${quoteMysql(table, true)}` : query!
  const keyOf = (row: Record<string, unknown>): unknown => {
    const values = keys.map((k) => row[k])
    // A key read as NULL (a zero date with zeroDates: 'null'): the next page, `key > NULL`, would be empty.
    const empty = keys.find((_, i) => values[i] === null || values[i] === undefined)
    if (empty !== undefined) throw new ExportError('ERR_SOURCE', 'source', `A row's key column ${empty} is NULL: keyset pages cannot go past it`)
    return composite ? values : values[0]
  }

  let fields: MysqlField[] = []
  let names: string[] = []
  let held: Held | undefined
  let restore: (() => Promise<void>) | undefined
  let starting: Promise<Held> | undefined
  let checkedNulls = false
  const typeCast = castFor(() => fields, zeroDates)
  const page = (connection: Held['connection'], sql: string, values: unknown[]) =>
    new Promise<unknown[][]>((resolve, reject) =>
      connection.query(arrayRows(sql, values, typeCast), (error, rows) => (error ? reject(error) : resolve(rows as unknown[][]))),
    )

  const start = async (): Promise<Held> => {
    const h = (held = await hold(options))
    restore = (await utcSession(h.connection, 86_400)).restore
    // The columns, from a query that returns none.
    await new Promise<void>((resolve, reject) =>
      (h.connection.query as (options: object, callback: (error: Error | null, rows: unknown, described: MysqlField[]) => void) => void)(
        { sql: `select * from (${relation}) as stream_export_page limit 0`, values: params, nestTables: false, rowsAsArray: true },
        (error, _rows, described) => {
          if (error) return reject(error)
          fields = described
          names = uniqueColumnNames(fields.map((field) => field.name))
          resolve()
        },
      ),
    )
    for (const k of keys)
      if (!names.includes(k)) throw new ExportError('ERR_INVALID_OPTION', 'options', `The key column ${k} is not among the columns: ${names.join(', ')}`)
    return h
  }
  // A key column that may hold NULL: rows with a NULL key would never be paged to (NULL > x is not true).
  const refuseNullKeys = async (connection: Held['connection']) => {
    checkedNulls = true
    for (const k of keys.filter((k) => (fields[names.indexOf(k)]!.flags & 1) === 0)) {
      const found = await run(connection, `select 1 from (${relation}) as stream_export_nulls where ${quoteMysql(k)} is null limit 1`, params)
      if (found.length > 0)
        throw new ExportError(
          'ERR_INVALID_OPTION',
          'options',
          `The key column ${k} holds NULLs: pages (key > last) leave those rows out, and they would be lost. Use a NOT NULL key (the primary key), or read the rows apart: a query with "where ${k} is not null", and those with "${k} is null" in a plain export`,
        )
    }
  }

  // The rows after a key (and up to `until`).
  const rowsAfter = (last: unknown): { sql: string; values: unknown[] } => {
    const conditions: string[] = []
    const values: unknown[] = [...params]
    for (const [condition, negate] of [
      [last === undefined ? undefined : after(quoted, valuesOf(last)), false],
      [until === undefined ? undefined : after(quoted, valuesOf(until)), true], // up to `until`, inclusive: not (key > until)
    ] as const) {
      if (!condition) continue
      conditions.push(negate ? `not ${condition.sql}` : condition.sql)
      values.push(...condition.values)
    }
    const where = conditions.length > 0 ? ` where ${conditions.join(' and ')}` : ''
    return { sql: `select * from (${relation}) as stream_export_page${where}`, values }
  }

  const stream = keysetPages<Record<string, unknown>>({
    batchSize,
    after: from,
    keyOf,
    async fetchPage(last) {
      const h = await (starting ??= start())
      if (!checkedNulls) await refuseNullKeys(h.connection)
      const { sql, values } = rowsAfter(last)
      const rows = await page(h.connection, `${sql} order by ${quoted.join(', ')} limit ?`, [...values, batchSize])
      return rows.map((cells) => {
        const row: Record<string, unknown> = {}
        for (let i = 0; i < cells.length; i++) row[names[i]!] = cells[i]
        return row
      })
    },
    // Pages are whole queries: between them nothing runs, and the connection is given back as it was.
    async release(failure) {
      await starting?.catch(() => undefined) // (a connection still being set up is given back once it is)
      const h = held
      held = undefined
      if (!h) return
      if ((failure as { fatal?: boolean } | undefined)?.fatal) return h.destroy() // (a broken connection)
      try {
        await restore?.()
        h.release()
      } catch {
        h.destroy()
      }
    },
  })
  if (count)
    stream.countRows = async () => {
      const { sql, values } = rowsAfter(from)
      return countRows(await (starting ??= start()), sql, values, count)
    }
  stream.columnTypes = (): ColumnType[] | undefined =>
    fields.length === 0 ? undefined : fields.map((field, i) => mysqlColumnType(names[i]!, field, zeroDates))
  return stream
}
