// After a job's commit: what the customer gets. Its entries in the export log, a link per file
// that never outlives the file (nor SigV4's 7 days) and saves under the file's name, and one
// notification per entry not yet notified. A notification that fails is recorded and reported,
// never the job's failure: the export has landed (the expiry processor sends it again).
import { createHash } from 'node:crypto'
import { checkNonNegativeInteger, checkObject, checkString } from '../core/options.js'
import { ExportError, invalidOption } from '../core/errors.js'
import type { ObjectChecksum } from '../core/checksum.js'
import type { S3ClientLike, S3Location } from '../sinks/s3/client.js'
import { presignDownload } from '../sinks/s3/presign.js'
import { encodeValue } from '../parts/partition-names.js'
import type { ExportLog, ExportLogEntry, NewExportLogEntry } from './export-log.js'
import { fileNameFromTemplate } from './names.js'
import type { ExportNotification } from './webhook.js'

/** SigV4's longest presigned URL: 7 days. */
export const MAX_LINK_SECONDS = 604_800

/**
 * The tag an export with `expiresIn` carries on each of its objects, for the S3 lifecycle rule
 * that deletes them without the expiry processor (docs/delivery.md#expiry): its days, rounded up.
 */
export const EXPIRY_TAG = 'stream-export-expires-in-days'

/** The tags of an export's objects: the expiry tag when it expires. */
export const expiryTags = (expiresIn: number | undefined): Record<string, string> | undefined =>
  expiresIn === undefined ? undefined : { [EXPIRY_TAG]: String(Math.ceil(expiresIn / 86_400)) }

/** The delivery settings of a job's spec (see ExportSpec). */
export interface DeliverySpec {
  filename?: string
  expiresIn?: number
  labels?: Record<string, unknown>
  requestedBy?: string
  fingerprint?: unknown
}

export function checkDeliverySpec(spec: DeliverySpec): void {
  if (spec.filename !== undefined) checkString('filename', spec.filename)
  if (spec.expiresIn !== undefined) {
    checkNonNegativeInteger('expiresIn', spec.expiresIn)
    if (spec.expiresIn === 0) invalidOption('expiresIn', 'a positive number of seconds', spec.expiresIn)
  }
  if (spec.labels !== undefined) checkObject('labels', spec.labels)
  if (spec.requestedBy !== undefined) checkString('requestedBy', spec.requestedBy)
}

export interface DeliveryContext {
  s3: S3ClientLike
  /** The longest a link lives (the processor's `urlExpiresIn`). */
  urlExpiresIn: number
  log?: ExportLog
  notify?(notification: ExportNotification): unknown
  now(): Date
}

/** A link to an entry's first object, or none once it is deleted or expired. */
export interface Link {
  url: string
  expiresAt: Date
}

/**
 * A presigned link to an entry's object `index` (default its first: what to download), living
 * `urlExpiresIn` seconds but never past the entry's expiry nor SigV4's 7 days, saving under the
 * entry's file name; none for an entry deleted or past its expiry.
 */
export async function presignEntry(
  s3: S3ClientLike,
  entry: ExportLogEntry | NewExportLogEntry,
  urlExpiresIn: number,
  now: Date,
  index = 0,
): Promise<Link | undefined> {
  if ('deletedAt' in entry && entry.deletedAt) return undefined
  const left = entry.expiresAt ? Math.floor((entry.expiresAt.getTime() - now.getTime()) / 1000) : Infinity
  const expiresIn = Math.min(urlExpiresIn, left, MAX_LINK_SECONDS)
  if (expiresIn <= 0) return undefined
  const single = entry.keys.length === 1 && entry.filename
  const url = await presignDownload(s3, { bucket: entry.bucket, key: entry.keys[index]!, expiresIn, ...(single ? { filename: entry.filename! } : {}) })
  return { url, expiresAt: new Date(now.getTime() + expiresIn * 1000) }
}

/** The notification of an entry, with its link. */
export function notificationOf(entry: ExportLogEntry | NewExportLogEntry, link: Link | undefined): ExportNotification {
  return {
    event: 'export.completed',
    jobId: entry.exportId,
    entryId: entry.id,
    rows: entry.rows,
    bytes: entry.bytes,
    location: { bucket: entry.bucket, key: entry.keys[0] },
    ...(link ? { url: link.url, urlExpiresAt: link.expiresAt.toISOString() } : {}),
    ...(entry.expiresAt ? { expiresAt: entry.expiresAt.toISOString() } : {}),
    ...(entry.filename ? { filename: entry.filename } : {}),
    ...(entry.checksum ? { checksum: entry.checksum } : {}),
    ...(entry.partition ? { partition: entry.partition } : {}),
    ...(entry.labels ? { labels: entry.labels } : {}),
    ...(entry.requestedBy ? { requestedBy: entry.requestedBy } : {}),
  }
}

/** What a job committed, as the processor knows it. */
export interface Committed {
  jobId: string
  /** `csv.gz`: the format's extension and its compression's. */
  format: string
  location: S3Location
  rows: number
  bytes: number
  checksum?: ObjectChecksum
  /** A partitioned job's partitions, with the links the export signed (kept when no name or expiry changes them). */
  partitions?: Array<{ values: Record<string, unknown>; rows: number; bytes: number; locations: S3Location[]; urls: string[] }>
  /** When the job began (names' `{date}`). */
  startedAt: Date
}

export interface Delivered {
  /** The job's own entry (a partitioned job: its manifest). */
  entry: ExportLogEntry | NewExportLogEntry
  link: Link | undefined
  /** Each partition's entry, with links to each of its objects. */
  partitions: Array<{ entry: ExportLogEntry | NewExportLogEntry; urls: string[] }>
  /** Notifications that failed (recorded in the log, retried by the expiry processor). */
  notifyErrors: ExportError[]
}

/** Records, links and notifies what a job committed (see the module's comment). */
export async function deliver(context: DeliveryContext, spec: DeliverySpec, committed: Committed): Promise<Delivered> {
  const { s3, urlExpiresIn, log, notify } = context
  const now = context.now()
  const expiresAt = spec.expiresIn === undefined ? null : new Date(now.getTime() + spec.expiresIn * 1000)
  const base = {
    exportId: committed.jobId,
    requestedBy: spec.requestedBy ?? null,
    fingerprint: spec.fingerprint === undefined ? null : fingerprintOf(spec.fingerprint),
    format: committed.format,
    bucket: committed.location.bucket,
    labels: spec.labels ?? null,
    createdAt: now,
    expiresAt,
  }
  const name = (values: Record<string, unknown>) =>
    spec.filename === undefined
      ? null
      : fileNameFromTemplate(spec.filename, { jobId: committed.jobId, date: committed.startedAt, values: { ...spec.labels, ...values } })
  const entries: NewExportLogEntry[] = [
    {
      ...base,
      id: committed.jobId,
      partition: null,
      rows: committed.rows,
      bytes: committed.bytes,
      checksum: committed.checksum ?? null,
      keys: [committed.location.key],
      filename: committed.partitions ? null : name({}),
    },
    ...(committed.partitions ?? []).map((p) => ({
      ...base,
      id: `${committed.jobId}/${Object.values(p.values).map(encodeValue).join('/')}`,
      partition: p.values,
      rows: p.rows,
      bytes: p.bytes,
      checksum: null,
      keys: p.locations.map((location) => location.key),
      filename: name(p.values),
    })),
  ]
  // The record first: an export the log does not hold would never expire (the attempt fails: ERR_STATE).
  const stored: Array<ExportLogEntry | NewExportLogEntry> = log ? await log.record(entries) : entries
  // (Signed when used: a job of 10,000 partitions without a notifier signs none of theirs again.)
  const link = (i: number) => presignEntry(s3, stored[i]!, urlExpiresIn, now)
  const notifyErrors: ExportError[] = []
  // Each partition's customer first, then the job's own notification.
  for (const i of [...stored.keys()].slice(1).concat(0)) {
    const entry = stored[i]!
    if (!notify || ('notifiedAt' in entry && entry.notifiedAt)) continue
    let failure: ExportError | undefined
    try {
      await notify(notificationOf(entry, await link(i)))
    } catch (error) {
      failure = notifyError(error)
      notifyErrors.push(failure)
    }
    // (A log that fails here leaves the entry as it was: not notified, and not sent again.)
    await log?.notified(entry.id, context.now(), failure?.message).catch(() => {})
  }
  const resign = spec.filename !== undefined || expiresAt !== null
  const partitions = await Promise.all(
    stored.slice(1).map(async (entry, i) => ({
      entry,
      urls: resign
        ? await Promise.all(entry.keys.map(async (_key, index) => (await presignEntry(s3, entry, urlExpiresIn, now, index))!.url))
        : committed.partitions![i]!.urls,
    })),
  )
  return { entry: stored[0]!, link: await link(0), partitions, notifyErrors }
}

/** SHA-256 of a source's identity (`{ sql, params }`), as canonical JSON (keys sorted). */
export function fingerprintOf(identity: unknown): string {
  const canonical = JSON.stringify(identity, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString()
    if (value && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date))
      return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    return value
  })
  return createHash('sha256')
    .update(canonical ?? 'undefined')
    .digest('hex')
}

/** A notifier's failure as ERR_NOTIFY (ours are already). */
export const notifyError = (error: unknown): ExportError =>
  error instanceof ExportError && error.code === 'ERR_NOTIFY'
    ? error
    : new ExportError('ERR_NOTIFY', 'notify', `Notification failed: ${(error as Error)?.message ?? String(error)}`, { cause: error })
