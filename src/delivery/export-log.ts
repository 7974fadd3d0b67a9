// The export log: who exported what, where it is, when it expires, and whether it was deleted,
// notified and downloaded. One entry per file a customer gets: a job's object, or each partition
// of a partitioned job plus the job's own entry (its manifest). A Postgres table created by a
// migration (`exportLogMigration`). The expiry processor leases entries (SKIP LOCKED, then a
// lease time) so that many workers share its work, none holds a transaction while it works, and
// an entry whose worker died is taken again when its lease ends.
import type { ObjectChecksum } from '../core/checksum.js'
import { ExportError, invalidOption } from '../core/errors.js'
import { checkObject, checkString, optionNames } from '../core/options.js'
import { quoteIdentifier, type PgPool } from '../sources/postgres/connection.js'

/** One file a customer gets, as the log holds it. */
export interface ExportLogEntry {
  /** The export's id; a partition's: the export's id, `/`, its encoded values. */
  id: string
  /** The export's id: `<queue>/<job id>` (see `exportIdOf`). */
  exportId: string
  /** The job's id, as BullMQ gave it. */
  jobId: string
  /** The commit this entry records: a retry that meets the same commit keeps its notification. */
  run: string
  /** A partition's values; null for the export's own entry. */
  partition: Record<string, unknown> | null
  requestedBy: string | null
  /** SHA-256 of what the spec's `fingerprint` gave (its query and parameters). */
  fingerprint: string | null
  /** The format's extension, with its compression: `csv.gz`. */
  format: string
  rows: number
  bytes: number
  checksum: ObjectChecksum | null
  bucket: string
  /** The objects, first the one to download (a partition's parts; a partitioned export's manifest). */
  keys: string[]
  filename: string | null
  labels: Record<string, unknown> | null
  createdAt: Date
  expiresAt: Date | null
  deletedAt: Date | null
  /** A later export that wrote the same key (its export id): this one's objects are gone with it. */
  replacedBy: string | null
  /** A notifier was given: the expiry processor sends what was not sent. */
  notify: boolean
  notifiedAt: Date | null
  /** The last notification's failure, while it is not sent. */
  notifyError: string | null
  /** Notifications of it that failed: the expiry processor waits twice as long after each, and gives up after 8. */
  notifyFailures: number
  downloadedAt: Date | null
  downloads: number
}

/** An entry as the processor records it: the store keeps or sets the rest. */
export type NewExportLogEntry = Omit<
  ExportLogEntry,
  'deletedAt' | 'replacedBy' | 'notifiedAt' | 'notifyError' | 'notifyFailures' | 'downloadedAt' | 'downloads'
>

/** An entry an expiry processor leased: for `expired`, the keys no other live entry names. */
export type LeasedEntry = ExportLogEntry & { deletable: string[] }

/** What a worker did with a leased entry: stored, and the lease ends (or lasts until `retryAt`). */
export type LeaseOutcome = Partial<Pick<ExportLogEntry, 'deletedAt' | 'notifiedAt' | 'notifyError'>> & { retryAt?: Date }

/** Where exports are recorded (`postgresExportLog`, or your own store with these calls). */
export interface ExportLog {
  /**
   * Records an export's entries (again, after a retry) in one transaction and resolves with them as
   * stored: an entry of the same `run` keeps what happened to it (notified, deleted, replaced: a
   * retry does not e-mail twice nor bring back a deleted export). Exports committed before this one
   * that named one of its keys are marked deleted and `replacedBy` it (their objects were
   * overwritten); if one committed after it names them, this one is the replaced one. The export's
   * own entries of an earlier run it does not record again are marked replaced too. `notifyUntil`:
   * the entries still to notify are leased until then (their job is notifying them).
   */
  record(entries: NewExportLogEntry[], options?: { notifyUntil?: Date }): Promise<ExportLogEntry[]>
  get(id: string): Promise<ExportLogEntry | undefined>
  /** The entries of an export: its own first, then its partitions'. */
  list(exportId: string): Promise<ExportLogEntry[]>
  /** The notification of an entry was sent (no `error`) or failed for now (`error`); its lease ends. */
  notified(id: string, at: Date, error?: string): Promise<void>
  /** A download of the entry was served: counts it; resolves with the entry as it is now. */
  downloaded(id: string, at: Date): Promise<ExportLogEntry | undefined>
  /**
   * Leases up to `limit` entries `pick` selects (`expired`: past their expiry, not deleted;
   * `unnotified`: to notify, not notified, not expired, failed fewer than 8 times) and no one else
   * leases, for `leaseMs`, then runs `work` on each and stores what it returns while the lease is
   * still this one's. Resolves with the entries so stored. A `work` that throws is a worker that
   * died: the call rejects and the lease runs out. `buckets`: only entries in these buckets (or
   * Azure containers); all by default.
   */
  lease(
    pick: 'expired' | 'unnotified',
    options: { now: Date; limit: number; leaseMs: number; buckets?: readonly string[] },
    work: (entry: LeasedEntry) => Promise<LeaseOutcome>,
  ): Promise<ExportLogEntry[]>
}

/** The SQL that creates the log's table (docs/delivery.md#the-export-log): run it in a migration. */
export function exportLogMigration(table = 'stream_export_log'): string {
  checkString('table', table)
  const name = quoteIdentifier(table, true)
  const index = (suffix: string) => quoteIdentifier(`${table.split('.').at(-1)}_${suffix}`)
  return `create table if not exists ${name} (
  id text primary key,
  export_id text not null,
  job_id text not null,
  run text not null,
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
  replaced_by text,
  notify boolean not null default false,
  notified_at timestamptz,
  notify_error text,
  notify_failures integer not null default 0,
  claimed_until timestamptz,
  downloaded_at timestamptz,
  downloads integer not null default 0
);
create index if not exists ${index('expires_idx')} on ${name} (expires_at) where deleted_at is null;
create index if not exists ${index('export_idx')} on ${name} (export_id);
create index if not exists ${index('keys_idx')} on ${name} using gin (keys) with (fastupdate = off) where deleted_at is null;
`
}

/** The columns an entry is recorded with, and their SQL types (for jsonb_to_recordset). */
const RECORDED = [
  ['id', 'id', 'text'],
  ['exportId', 'export_id', 'text'],
  ['jobId', 'job_id', 'text'],
  ['run', 'run', 'text'],
  ['partition', 'partition', 'jsonb'],
  ['requestedBy', 'requested_by', 'text'],
  ['fingerprint', 'fingerprint', 'text'],
  ['format', 'format', 'text'],
  ['rows', 'rows', 'bigint'],
  ['bytes', 'bytes', 'bigint'],
  ['checksum', 'checksum', 'jsonb'],
  ['bucket', 'bucket', 'text'],
  ['keys', 'keys', 'text[]'],
  ['filename', 'filename', 'text'],
  ['labels', 'labels', 'jsonb'],
  ['createdAt', 'created_at', 'timestamptz'],
  ['expiresAt', 'expires_at', 'timestamptz'],
  ['notify', 'notify', 'boolean'],
] as const

type Row = Record<string, unknown>
/** Failed notifications of an entry after which the expiry processor stops sending it. */
const MAX_NOTIFY_FAILURES = 8

/** What a string must not hold to be stored in jsonb (and sent as a header): a NUL, a lone surrogate. */
// eslint-disable-next-line no-control-regex -- a NUL is what it looks for
export const LONE_SURROGATE_OR_NUL = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]|\u0000/g

/** A value as jsonb holds it: its strings' NULs and lone surrogates as U+FFFD (Postgres refuses them). */
function jsonSafe(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(LONE_SURROGATE_OR_NUL, '\ufffd')
  if (Array.isArray(value)) return value.map(jsonSafe)
  if (value !== null && typeof value === 'object' && !(value instanceof Date))
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [jsonSafe(key) as string, jsonSafe(inner)]))
  return value
}
const entryOf = (row: Row): ExportLogEntry => ({
  id: row.id as string,
  exportId: row.export_id as string,
  jobId: row.job_id as string,
  run: row.run as string,
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
  replacedBy: (row.replaced_by as string | null) ?? null,
  notify: row.notify === true,
  notifiedAt: (row.notified_at as Date | null) ?? null,
  notifyError: (row.notify_error as string | null) ?? null,
  notifyFailures: Number(row.notify_failures ?? 0),
  downloadedAt: (row.downloaded_at as Date | null) ?? null,
  downloads: Number(row.downloads ?? 0),
})
// The order of an export's entries and of leased work: the download of a manifest before its parts.
const byExpiry = (a: ExportLogEntry, b: ExportLogEntry) =>
  (a.expiresAt?.getTime() ?? 0) - (b.expiresAt?.getTime() ?? 0) || Number(a.partition !== null) - Number(b.partition !== null) || (a.id < b.id ? -1 : 1)

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
  const transaction = async <T>(query: Query, work: () => Promise<T>): Promise<T> => {
    await query('begin')
    try {
      const result = await work()
      await query('commit')
      return result
    } catch (error) {
      await query('rollback').catch(() => {})
      throw error
    }
  }

  const record = (entries: NewExportLogEntry[], { notifyUntil }: { notifyUntil?: Date } = {}) =>
    withClient((query) =>
      transaction(query, async () => {
        if (entries.length === 0) return []
        const { exportId, run, bucket, createdAt } = entries[0]!
        // (jsonb cannot hold a NUL or a lone surrogate: in partition values they are stored as U+FFFD; the manifest has them.)
        const json = JSON.stringify(entries.map((entry) => Object.fromEntries(RECORDED.map(([field, column]) => [column, jsonSafe(entry[field])]))))
        const columns = RECORDED.map(([, column]) => column)
        const keys = entries.flatMap((entry) => entry.keys)
        const ids = entries.map((entry) => entry.id)
        // One record at a time per bucket: two exports at one key never both stay live.
        await query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [`stream-export-log:${name}:${bucket}`])
        // The other live exports at one of these keys, and whether each committed before this one:
        // asked before this export's rows go in (key by key through the keys' GIN index; `keys &&
        // <10,000 keys>` would scan the table, and the index's pending list of rows just inserted
        // would make each probe slow).
        const { rows: sharing } = await query(
          `select o.export_id, max(o.created_at) <= $4 as earlier, max(o.created_at) as committed from unnest($3::text[]) k
           join ${name} o on o.keys @> array[k]
           where o.deleted_at is null and o.bucket = $2 and o.export_id <> $1 group by o.export_id`,
          [exportId, bucket, keys, createdAt],
        )
        const same = 'log.run = excluded.run'
        await query(
          `insert into ${name} as log (${columns.join(', ')}, claimed_until)
           select *, case when x.notify then $2::timestamptz end from jsonb_to_recordset($1::jsonb) as x(${RECORDED.map(([, column, type]) => `${column} ${type}`).join(', ')})
           on conflict (id) do update set
             ${columns
               .slice(1)
               .map((column) => `${column} = excluded.${column}`)
               .join(', ')},
             deleted_at = case when ${same} then log.deleted_at end,
             replaced_by = case when ${same} then log.replaced_by end,
             notified_at = case when ${same} then log.notified_at end,
             notify_error = case when ${same} then log.notify_error end,
             notify_failures = case when ${same} then log.notify_failures else 0 end,
             claimed_until = case when excluded.notify and (log.notified_at is null or not ${same}) then greatest(log.claimed_until, $2::timestamptz) else log.claimed_until end`,
          [json, notifyUntil ?? null],
        )
        // Those committed before this one: this one overwrote them.
        const earlier = sharing.filter((row) => row.earlier).map((row) => row.export_id as string)
        if (earlier.length > 0)
          await query(`update ${name} set deleted_at = $3, replaced_by = $2 where deleted_at is null and export_id = any($1::text[])`, [
            earlier,
            exportId,
            createdAt,
          ])
        // One committed after it (its record came first): this one is the overwritten one.
        const later = sharing.filter((row) => !row.earlier).sort((x, y) => (y.committed as Date).getTime() - (x.committed as Date).getTime())[0]
        if (later)
          await query(`update ${name} set deleted_at = $2, replaced_by = $3 where export_id = $1 and deleted_at is null`, [
            exportId,
            createdAt,
            later.export_id,
          ])
        // An earlier run of this export whose entries this one does not record again: its commit replaced their parts.
        await query(
          `update ${name} set deleted_at = $4, replaced_by = $1 where export_id = $1 and deleted_at is null and run <> $2 and id not in (select unnest($3::text[]))`,
          [exportId, run, ids, createdAt],
        )
        const { rows } = await query(`select * from ${name} where id = any($1::text[])`, [ids])
        const stored = new Map(rows.map((row) => [row.id as string, entryOf(row)]))
        return ids.map((id) => stored.get(id)!)
      }),
    )

  return {
    record,
    get: async (id) => (await all(`select * from ${name} where id = $1`, [id]))[0],
    list: async (exportId) => (await all(`select * from ${name} where export_id = $1`, [exportId])).sort(byExpiry),
    notified: async (id, at, error) =>
      void (await all(
        `update ${name} set notified_at = $2, notify_error = $3, notify_failures = notify_failures + $4, claimed_until = null where id = $1 returning *`,
        [id, error ? null : at, error ?? null, error ? 1 : 0],
      )),
    downloaded: async (id, at) => (await all(`update ${name} set downloaded_at = $2, downloads = downloads + 1 where id = $1 returning *`, [id, at]))[0],
    lease: async (pick, { now, limit, leaseMs, buckets }, work) => {
      const where =
        pick === 'expired'
          ? 'expires_at <= $1 and deleted_at is null'
          : `notify and notified_at is null and deleted_at is null and (expires_at is null or expires_at > $1) and notify_failures < ${MAX_NOTIFY_FAILURES}`
      const until = new Date(now.getTime() + leaseMs)
      // A short statement: the rows another worker is leasing are skipped, the lease is the mark.
      const leased = await all(
        `update ${name} as log set claimed_until = $3 from (
           select id from ${name} where ${where} and (claimed_until is null or claimed_until <= $1) and ($4::text[] is null or bucket = any($4))
           order by expires_at, partition is not null, id limit $2 for update skip locked) as picked
         where log.id = picked.id returning log.*`,
        [now, limit, until, buckets ?? null],
      )
      const done: ExportLogEntry[] = []
      for (const entry of leased.sort(byExpiry)) {
        // A key another live entry names is not this entry's to delete.
        const deletable =
          pick === 'expired'
            ? ((
                await withClient((query) =>
                  query(
                    `select coalesce(array_agg(k), '{}') as keys from unnest($2::text[]) k
                     where not exists (select 1 from ${name} o where o.id <> $1 and o.deleted_at is null and o.bucket = $3 and o.keys @> array[k])`,
                    [entry.id, entry.keys, entry.bucket],
                  ),
                )
              ).rows[0]!.keys as string[])
            : []
        const outcome = await work({ ...entry, deletable })
        const failed = typeof outcome.notifyError === 'string'
        // Stored only while the lease is still this worker's.
        const [stored] = await all(
          `update ${name} set deleted_at = coalesce($3, deleted_at), notified_at = coalesce($4, notified_at), notify_error = $5,
             notify_failures = notify_failures + $7, claimed_until = $6
           where id = $1 and claimed_until = $2 returning *`,
          [
            entry.id,
            until,
            outcome.deletedAt ?? null,
            outcome.notifiedAt ?? null,
            'notifyError' in outcome ? outcome.notifyError : entry.notifyError,
            outcome.retryAt ?? null,
            failed ? 1 : 0,
          ],
        )
        if (stored) done.push(stored)
      }
      return done
    },
  }
}
