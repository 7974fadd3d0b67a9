import type { Readable } from 'node:stream'
import { invalidOption } from '../../core/errors.js'
import { checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import type { Row, SourceExtras } from '../../core/types.js'
import { fromPages } from '../iterable.js'
import type { MysqlConnectionLike, MysqlPoolLike } from './connection.js'
import { mysqlKeysetSource, quoteMysql } from './keyset.js'
import { bindable } from './types.js'

/** Where a MySQL incremental export stopped (plain JSON; see docs/incremental.md). */
export interface MysqlIncrementalWatermark {
  version: 1
  /** The column every write sets, and the highest value exported, as the source reads it (ISO 8601). */
  column: string
  high: string
  /** Rows exported within `lookbackMs` below `high`, as `<key JSON>|<value>`: not exported again. */
  seen: string[]
}

export interface MysqlIncrementalSourceOptions {
  pool?: MysqlPoolLike
  connection?: MysqlConnectionLike
  /** The table (`table` or `db.table`)... */
  table?: string
  /** ...or a SELECT whose rows hold `column` and `key`, with `?` placeholders for `params`. */
  query?: string
  params?: unknown[]
  /** The DATETIME or TIMESTAMP column every write sets. Default `updated_at`. */
  column?: string
  /** A unique, never NULL column that orders rows of the same `column` value. Default `id`. */
  key?: string
  /** The watermark of the previous run (`result.watermark`); undefined: every row. */
  after?: MysqlIncrementalWatermark
  /**
   * How late a write may become visible after the value it wrote to `column` (a transaction's
   * length, clock skew between writers): rows this far below the last run's highest value are read
   * again and those not exported yet are exported. Default 600000 (10 minutes).
   */
  lookbackMs?: number
  batchSize?: number
}

/** A MySQL incremental source: `watermark` is the next run's `after`, once every row has been read. */
export type MysqlIncrementalSource = Readable & SourceExtras & { readonly watermark: MysqlIncrementalWatermark | undefined }

const NAMES = optionNames<MysqlIncrementalSourceOptions>({
  pool: true,
  connection: true,
  table: true,
  query: true,
  params: true,
  column: true,
  key: true,
  after: true,
  lookbackMs: true,
  batchSize: true,
})

function checkWatermark(after: unknown, column: string): asserts after is MysqlIncrementalWatermark {
  const w = after as Partial<MysqlIncrementalWatermark> | null
  const ok =
    typeof w === 'object' &&
    w !== null &&
    w.version === 1 &&
    w.column === column &&
    typeof w.high === 'string' &&
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:\+00:00)?$/.test(w.high) &&
    Array.isArray(w.seen) &&
    w.seen.every((key) => typeof key === 'string')
  if (!ok) invalidOption('after', `the watermark of an earlier run over \`${column}\` (result.watermark)`, after)
}

/**
 * The rows of a table written since the previous run, by a DATETIME or TIMESTAMP column every
 * write sets (`updated_at`), in its order: each run reads from `lookbackMs` below the previous
 * run's highest value and skips the rows it exported there, so a write that becomes visible late
 * (a transaction, a writer's clock behind) within that window is exported once. Pages as
 * mysqlKeysetSource does, on (column, key). See docs/mysql.md#incremental-exports.
 */
export function mysqlIncrementalSource(options: MysqlIncrementalSourceOptions): MysqlIncrementalSource {
  checkObject('options', options, NAMES)
  const { pool, connection, table, query, params = [], column = 'updated_at', key = 'id', after, lookbackMs = 600_000, batchSize = 1000 } = options
  checkString('column', column)
  checkString('key', key)
  if (!Number.isSafeInteger(lookbackMs) || lookbackMs < 0) invalidOption('lookbackMs', 'a whole number of milliseconds, 0 or more', lookbackMs)
  checkPositiveInteger('batchSize', batchSize)
  if (after !== undefined) checkWatermark(after, column)
  if ((table === undefined) === (query === undefined)) invalidOption('table', 'a table name, or `query` instead (one of them)', table)
  if (!Array.isArray(params)) invalidOption('params', 'an array', params)
  const relation = table !== undefined ? `select * from ${quoteMysql(table, true)}` : query!
  const since = after && {
    query: `select * from (${relation}) as stream_export_since where ${quoteMysql(column)} >= timestampadd(microsecond, ?, ?)`,
    params: [...params, -lookbackMs * 1000, bindable(after.high)],
  }
  const rows = mysqlKeysetSource({
    ...(pool !== undefined ? { pool } : { connection: connection! }),
    query: since ? since.query : relation,
    params: since ? since.params : params,
    key: [column, key],
    batchSize,
  })

  let high = after?.high
  let recent = (after?.seen ?? []).map((seen) => ({ seen, at: seen.slice(seen.lastIndexOf('|') + 1) }))
  const skip = new Set(after?.seen)
  let ended = false
  // (Compared as text without an offset: DATETIME is wall-clock, TIMESTAMP read in UTC.)
  // (Every value with six fractional digits: `...:00` and `...:00.000` compare as the same instant.)
  const wall = (value: string) => {
    const [seconds, fraction = ''] = value.replace(/\+00:00$/, '').split('.')
    return `${seconds}.${fraction.padEnd(6, '0')}`
  }
  const floor = (top: string) => wall(new Date(Date.parse(`${wall(top).slice(0, 23)}Z`) - lookbackMs).toISOString().slice(0, -1))
  const inWindow = (at: string, top: string) => wall(at) >= floor(top)

  async function* changes(): AsyncGenerator<Row[]> {
    try {
      let page: Row[] = []
      for await (const row of rows as AsyncIterable<Row>) {
        const at = row[column]
        if (typeof at !== 'string') {
          page.push(row) // (a NULL value: exported, it cannot move the watermark)
          continue
        }
        const seen = `${JSON.stringify(row[key])}|${at}`
        if (skip.has(seen)) continue
        if (high === undefined || at > high) high = at
        recent.push({ seen, at })
        page.push(row)
        if (page.length >= batchSize) {
          yield page
          page = []
          if (recent.length > 4 * batchSize) recent = recent.filter(({ at: value }) => inWindow(value, high!))
        }
      }
      if (page.length > 0) yield page
      ended = true
    } finally {
      rows.destroy()
    }
  }

  const source = fromPages(changes())
  source.columnTypes = () => rows.columnTypes?.()
  const watermark = (): MysqlIncrementalWatermark | undefined => {
    if (!ended) return undefined
    if (high === undefined) return after ?? undefined
    const top = high
    return { version: 1, column, high: top, seen: recent.filter(({ at }) => inWindow(at, top)).map(({ seen }) => seen) }
  }
  return Object.defineProperty(source, 'watermark', { get: watermark, enumerable: true }) as MysqlIncrementalSource
}
