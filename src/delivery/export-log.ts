// The export log: who exported what, where it is, when it expires, and whether it was deleted,
// notified and downloaded. One entry per file a customer gets: a job's object, or each partition
// of a partitioned job plus the job's own entry (its manifest). A Postgres table created by a
// migration (`exportLogMigration`), claimed with SKIP LOCKED so that many workers share its work.
import type { ObjectChecksum } from '../core/checksum.js'
import { ExportError, invalidOption } from '../core/errors.js'
import { checkObject, checkString, optionNames } from '../core/options.js'
import { quoteIdentifier, type PgPool } from '../sources/postgres/connection.js'

/** One file a customer gets, as the log holds it. */
export interface ExportLogEntry {
  /** The job's id; a partition's: the job's id, `/`, its encoded values. */
  id: string
  /** The job's id. */
  exportId: string
  /** A partition's values; null for the job's own entry. */
  partition: Record<string, unknown> | null
  requestedBy: string | null
  /** SHA-256 of the source's query and parameters (or what the spec gave). */
  fingerprint: string | null
  /** The format's extension, with its compression: `csv.gz`. */
  format: string
  rows: number
  bytes: number
  checksum: ObjectChecksum | null
  bucket: string
  /** The objects, first the one to download (a partition's parts; a partitioned job's manifest). */
  keys: string[]
  filename: string | null
  labels: Record<string, unknown> | null
  createdAt: Date
  expiresAt: Date | null
  deletedAt: Date | null
  notifiedAt: Date | null
  /** The last notification's failure, while it is not sent. */
  notifyError: string | null
  downloadedAt: Date | null
  downloads: number
}

/** An entry as the processor records it: the store keeps or sets the rest. */
export type NewExportLogEntry = Omit<ExportLogEntry, 'deletedAt' | 'notifiedAt' | 'notifyError' | 'downloadedAt' | 'downloads'>

/** Where exports are recorded (`postgresExportLog`, or your own store with these calls). */
export interface ExportLog {
  /**
   * Records a job's entries (again, after a retry) and resolves with them as stored: an entry that
   * names the same objects and rows as before keeps its `notifiedAt` (a retry does not e-mail twice).
   */
  record(entries: NewExportLogEntry[]): Promise<ExportLogEntry[]>
  get(id: string): Promise<ExportLogEntry | undefined>
  /** The entries of a job: its own first, then its partitions'. */
  list(exportId: string): Promise<ExportLogEntry[]>
  /** The notification of an entry was sent (no `error`) or failed for now (`error`). */
  notified(id: string, at: Date, error?: string): Promise<void>
  /** A download of the entry was served: counts it; resolves with the entry as it is now. */
  downloaded(id: string, at: Date): Promise<ExportLogEntry | undefined>
  /**
   * Claims up to `limit` entries `pick` selects (`expired`: past their expiry and not deleted;
   * `unnotified`: a failed notification, not expired), so that no other worker takes them while
   * `work` runs, and stores what `work` returns for each (`deletedAt` or `notifiedAt`/`notifyError`).
   */
  claim(
    pick: 'expired' | 'unnotified',
    now: Date,
    limit: number,
    work: (entry: ExportLogEntry) => Promise<Partial<Pick<ExportLogEntry, 'deletedAt' | 'notifiedAt' | 'notifyError'>>>,
  ): Promise<ExportLogEntry[]>
}

/** The SQL that creates the log's table (docs/delivery.md#the-export-log): run it in a migration. */
export function exportLogMigration(table = 'stream_export_log'): string {
  const name = quoteIdentifier(table, true)
  const index = quoteIdentifier(`${table.split('.').at(-1)}_expires_idx`)
  return `create table if not exists ${name} (
  id text primary key,
  export_id text not null,
  partition jsonb,
  requested_by text,
  fingerprint text,
  format text not null,
  rows bigint not null,
  bytes bigint not null,
  checksum jsonb,
  bucket text not null,
  keys text[] not null,
  filename text,
  labels jsonb,
  created_at timestamptz not null,
  expires_at timestamptz,
  deleted_at timestamptz,
  notified_at timestamptz,
  notify_error text,
  downloaded_at timestamptz,
  downloads integer not null default 0
);
create index if not exists ${index} on ${name} (expires_at) where deleted_at is null;
`
}

const COLUMNS = [
  ['id', 'id'],
  ['exportId', 'export_id'],
  ['partition', 'partition'],
  ['requestedBy', 'requested_by'],
  ['fingerprint', 'fingerprint'],
  ['format', 'format'],
  ['rows', 'rows'],
  ['bytes', 'bytes'],
  ['checksum', 'checksum'],
  ['bucket', 'bucket'],
  ['keys', 'keys'],
  ['filename', 'filename'],
  ['labels', 'labels'],
  ['createdAt', 'created_at'],
  ['expiresAt', 'expires_at'],
] as const
const JSON_COLUMNS = new Set(['partition', 'checksum', 'labels'])

type Row = Record<string, unknown>
const entryOf = (row: Row): ExportLogEntry => ({
  id: row.id as string,
  exportId: row.export_id as string,
  partition: (row.partition as ExportLogEntry['partition']) ?? null,
  requestedBy: (row.requested_by as string | null) ?? null,
  fingerprint: (row.fingerprint as string | null) ?? null,
  format: row.format as string,
  rows: Number(row.rows),
  bytes: Number(row.bytes),
  checksum: (row.checksum as ObjectChecksum | null) ?? null,
  bucket: row.bucket as string,
  keys: row.keys as string[],
  filename: (row.filename as string | null) ?? null,
  labels: (row.labels as ExportLogEntry['labels']) ?? null,
  createdAt: row.created_at as Date,
  expiresAt: (row.expires_at as Date | null) ?? null,
  deletedAt: (row.deleted_at as Date | null) ?? null,
  notifiedAt: (row.notified_at as Date | null) ?? null,
  notifyError: (row.notify_error as string | null) ?? null,
  downloadedAt: (row.downloaded_at as Date | null) ?? null,
  downloads: Number(row.downloads ?? 0),
})

const LOG_OPTION_NAMES = optionNames<PostgresExportLogOptions>({ pool: true, table: true })

export interface PostgresExportLogOptions {
  pool: PgPool
  /** Default `stream_export_log` (may be schema-qualified). */
  table?: string
}

type Query = (text: string, values?: unknown[]) => Promise<{ rows: Row[] }>

/** The export log in a Postgres table (create it with `exportLogMigration()`); failures are ERR_STATE. */
export function postgresExportLog(options: PostgresExportLogOptions): ExportLog {
  checkObject('options', options, LOG_OPTION_NAMES)
  const { pool, table = 'stream_export_log' } = options
  if (typeof pool?.connect !== 'function') invalidOption('pool', 'a pg Pool', pool)
  checkString('table', table)
  const name = quoteIdentifier(table, true)
  const withClient = async <T>(work: (query: Query) => Promise<T>): Promise<T> => {
    let client
    try {
      client = await pool.connect()
      return await work((client.query as unknown as Query).bind(client))
    } catch (error) {
      if (error instanceof ExportError) throw error
      const missing = (error as { code?: string }).code === '42P01'
      throw new ExportError(
        'ERR_STATE',
        'state',
        missing ? `The export log ${table} does not exist: run exportLogMigration() (docs/delivery.md)` : `The export log failed: ${(error as Error).message}`,
        { cause: error },
      )
    } finally {
      await client?.release?.()
    }
  }
  const all = (text: string, values: unknown[]) => withClient(async (query) => (await query(text, values)).rows.map(entryOf))
  return {
    record: (entries) =>
      withClient(async (query) => {
        const stored: ExportLogEntry[] = []
        for (const entry of entries) {
          const values = COLUMNS.map(([field]) => (JSON_COLUMNS.has(field) && entry[field] !== null ? JSON.stringify(entry[field]) : entry[field]))
          const { rows } = await query(
            `insert into ${name} as log (${COLUMNS.map(([, column]) => column).join(', ')})
             values (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
             on conflict (id) do update set
               ${COLUMNS.slice(1)
                 .map(([, column]) => `${column} = excluded.${column}`)
                 .join(', ')},
               deleted_at = null,
               notified_at = case when log.keys = excluded.keys and log.rows = excluded.rows and log.deleted_at is null then log.notified_at end,
               notify_error = case when log.keys = excluded.keys and log.rows = excluded.rows and log.deleted_at is null then log.notify_error end
             returning *`,
            values,
          )
          stored.push(entryOf(rows[0]!))
        }
        return stored
      }),
    get: async (id) => (await all(`select * from ${name} where id = $1`, [id]))[0],
    list: (exportId) => all(`select * from ${name} where export_id = $1 order by partition is not null, created_at, id`, [exportId]),
    notified: async (id, at, error) =>
      void (await all(`update ${name} set notified_at = $2, notify_error = $3 where id = $1 returning *`, [id, error ? null : at, error ?? null])),
    downloaded: async (id, at) => (await all(`update ${name} set downloaded_at = $2, downloads = downloads + 1 where id = $1 returning *`, [id, at]))[0],
    claim: (pick, now, limit, work) =>
      withClient(async (query) => {
        const where =
          pick === 'expired'
            ? 'expires_at <= $1 and deleted_at is null'
            : 'notified_at is null and notify_error is not null and deleted_at is null and (expires_at is null or expires_at > $1)'
        await query('begin')
        try {
          // Rows another worker holds are skipped: it is working on them.
          const { rows } = await query(`select * from ${name} where ${where} order by expires_at, partition is not null, id limit $2 for update skip locked`, [
            now,
            limit,
          ])
          const done: ExportLogEntry[] = []
          for (const entry of rows.map(entryOf)) {
            const change = await work(entry)
            const { rows: updated } = await query(
              `update ${name} set deleted_at = coalesce($2, deleted_at), notified_at = coalesce($3, notified_at), notify_error = $4 where id = $1 returning *`,
              [entry.id, change.deletedAt ?? null, change.notifiedAt ?? null, 'notifyError' in change ? change.notifyError : entry.notifyError],
            )
            done.push(entryOf(updated[0]!))
          }
          await query('commit')
          return done
        } catch (error) {
          await query('rollback').catch(() => {})
          throw error
        }
      }),
  }
}
