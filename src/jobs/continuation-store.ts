// Where a Lambda export keeps its state between invocations (lambda.ts): one record per job,
// written by compare-and-set on a version, so that two invocations of one message (SQS delivers
// at least once) cannot both continue the same upload.
import { invalidOption } from '../core/errors.js'
import { checkObject, checkString } from '../core/options.js'
import { quoteIdentifier, type PgPool } from '../sources/postgres/connection.js'

/**
 * A job's state between invocations: a text value and a version, replaced only by a write that
 * names the version it read. DynamoDB-shaped: `put` is a PutItem with
 * `ConditionExpression: 'attribute_not_exists(id) OR version = :previous'` (docs/lambda.md).
 */
export interface ContinuationStore {
  /** The job's record, or undefined before its first invocation. */
  get(jobId: string): Promise<{ version: number; value: string } | undefined>
  /**
   * Stores `value` as `version` if the record is at `version - 1` (absent, for version 1); resolves
   * false, writing nothing, when it is not (another invocation wrote first).
   */
  put(jobId: string, version: number, value: string): Promise<boolean>
}

/**
 * Continuation records in a Postgres table (default `stream_export_continuations`: job_id, version,
 * value, updated_at), created on first use. A record is a few hundred bytes and ~130 bytes per
 * uploaded part; a finished job's stays (its duplicates are recognised by it): delete old ones by
 * `updated_at`.
 */
export function postgresContinuationStore(options: { pool: PgPool; table?: string }): ContinuationStore {
  checkObject('options', options, new Set(['pool', 'table']))
  const { pool, table = 'stream_export_continuations' } = options
  if (typeof pool?.connect !== 'function') invalidOption('pool', 'a pg Pool', pool)
  checkString('table', table)
  const name = quoteIdentifier(table, true)
  type Query = (text: string, values?: unknown[]) => Promise<{ rows: Array<{ version: number; value: string }>; rowCount: number | null }>
  let created: Promise<unknown> | undefined
  const run = async (text: string, values: unknown[]) => {
    const client = await pool.connect()
    try {
      const query = (client.query as unknown as Query).bind(client)
      created ??= query(
        `create table if not exists ${name} (job_id text primary key, version integer not null, value text not null, updated_at timestamptz not null default now())`,
      ).catch((error: unknown) => {
        created = undefined
        throw error
      })
      await created
      return await query(text, values)
    } finally {
      await client.release?.()
    }
  }
  return {
    get: async (jobId) => (await run(`select version, value from ${name} where job_id = $1`, [jobId])).rows[0],
    put: async (jobId, version, value) => {
      const result =
        version === 1
          ? await run(`insert into ${name} (job_id, version, value) values ($1, 1, $2) on conflict (job_id) do nothing`, [jobId, value])
          : await run(`update ${name} set version = $2, value = $3, updated_at = now() where job_id = $1 and version = $2 - 1`, [jobId, version, value])
      return result.rowCount === 1
    },
  }
}
