import { ExportError } from '../../core/errors.js'
import { quoteIdentifier, type PgClient } from './connection.js'

type Query = (config: { text: string; values: unknown[] }) => Promise<{ rows: Array<Record<string, unknown>> }>

/**
 * Refuses a key column that holds NULLs, with ERR_INVALID_OPTION naming it: key ranges and pages
 * (`key > after`, `key <= until`, `key > last`) leave out every row whose key is NULL, which would
 * be lost without a word. A table's NOT NULL columns are known from the catalog and not read; any
 * other key column is probed for one NULL (an index on the key answers that at once).
 *
 * @param relation the rows read (`select * from table`, or the caller's query), before any range
 */
export async function refuseNullKeys(client: PgClient, options: { table?: string; relation: string; values: unknown[]; keys: string[] }): Promise<void> {
  const { table, relation, values, keys } = options
  const query = (config: { text: string; values: unknown[] }) => (client.query as unknown as Query).call(client, config)
  let nullable = keys
  if (table !== undefined) {
    const { rows } = await query({
      text: 'select attname from pg_attribute where attrelid = to_regclass($1) and attnum > 0 and not attisdropped and attnotnull and attname = any($2::text[])',
      values: [quoteIdentifier(table, true), keys], // no such table: no row here, and the probe says why
    })
    const notNull = new Set(rows.map((row) => row.attname))
    nullable = keys.filter((key) => !notNull.has(key))
  }
  if (nullable.length === 0) return
  const probes = nullable.map((key, i) => `exists (select 1 from (${relation}) as stream_export_nulls where ${quoteIdentifier(key)} is null) as "n${i}"`)
  const [found] = (await query({ text: `select ${probes.join(', ')}`, values })).rows
  const column = nullable.find((_, i) => found?.[`n${i}`] === true)
  if (column === undefined) return
  const name = JSON.stringify(column)
  throw new ExportError(
    'ERR_INVALID_OPTION',
    'options',
    `The key column ${name} holds NULLs: key ranges and pages (key > last) leave those rows out, and they would be lost. ` +
      `Use a NOT NULL key (the primary key), or read the rows apart: a select with "where ${name} is not null", and those with "${name} is null" in a plain export`,
  )
}
