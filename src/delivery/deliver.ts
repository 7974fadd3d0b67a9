// After a job's commit: what the customer gets. Its entries in the export log, a link per file
// that never outlives the file (nor SigV4's 7 days) and saves under the file's name, and one
// notification per entry not yet notified. A notification that fails is recorded and reported,
// never the job's failure: the export has landed (the expiry processor sends it again).
import { createHash } from 'node:crypto'
import { checkNonNegativeInteger, checkObject, checkString } from '../core/options.js'
import { ExportError, invalidOption } from '../core/errors.js'
import type { ObjectChecksum } from '../core/checksum.js'
import type { S3Location } from '../sinks/s3/client.js'
import { encodeValue } from '../parts/partition-names.js'
import { LONE_SURROGATE_OR_NUL, type ExportLog, type ExportLogEntry, type NewExportLogEntry } from './export-log.js'
import { presignEntry, notificationOf, type Link, type LinkSigner } from './links.js'
import { checkFileNameTemplate, fileNameFromTemplate } from './names.js'
import type { ExportNotification } from './webhook.js'

/**
 * The tag an export with `expiresIn` carries on each of its objects with the processor's
 * `expiryTag`, for the S3 lifecycle rule that deletes them (docs/delivery.md#expiry): its days, rounded up.
 */
export const EXPIRY_TAG = 'stream-export-expires-in-days'

/** The tags of an export's objects: the expiry tag when it expires and tags are asked for. */
export const expiryTags = (expiresIn: number | undefined, tag: boolean): Record<string, string> | undefined =>
  expiresIn === undefined || !tag ? undefined : { [EXPIRY_TAG]: String(Math.ceil(expiresIn / 86_400)) }

/** The longest `expiresIn`: 100 years (a Date holds it; past that, keep the file: leave it unset). */
const MAX_EXPIRES_IN = 100 * 365 * 86_400
/** Notifications that fail one after another before the rest of a job's are left to the expiry processor. */
const FAILURES_IN_A_ROW = 3
/** How long a job's entries still to notify are its own (leased) before the expiry processor may send them. */
const NOTIFY_LEASE_MS = 3_600_000
/** A string the log, the names and the headers can hold. */
const wellFormed = (text: string) => !new RegExp(LONE_SURROGATE_OR_NUL.source).test(text)

/** The delivery settings of a job's spec (see ExportSpec). */
export interface DeliverySpec {
  filename?: string
  expiresIn?: number
  labels?: Record<string, unknown>
  requestedBy?: string
  fingerprint?: unknown
}

/**
 * A spec's delivery settings, checked before anything is written: a file name template naming only
 * what it can be given, labels the log and the names can hold (strings, finite numbers, booleans,
 * null), an expiry something will act on (the log's expiry processor, or tags for a lifecycle rule).
 */
export function checkDeliverySpec(spec: DeliverySpec, partitions: ReadonlySet<string> | 'any' | undefined, expiry: { log: boolean; tag: boolean }): void {
  if (spec.labels !== undefined) {
    checkObject('labels', spec.labels)
    for (const [name, value] of Object.entries(spec.labels)) {
      const scalar = value === null || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'string'
      if (!scalar || (typeof value === 'string' && !wellFormed(value)))
        invalidOption(`labels.${name}`, 'a string (without NUL or lone surrogates), a finite number, a boolean or null', value)
    }
  }
  if (spec.filename !== undefined) {
    checkString('filename', spec.filename)
    checkFileNameTemplate(spec.filename, spec.labels, partitions)
  }
  if (spec.expiresIn !== undefined) {
    checkNonNegativeInteger('expiresIn', spec.expiresIn)
    if (spec.expiresIn === 0 || spec.expiresIn > MAX_EXPIRES_IN)
      invalidOption('expiresIn', `a positive number of seconds, at most ${MAX_EXPIRES_IN}`, spec.expiresIn)
    if (!expiry.log && !expiry.tag)
      invalidOption(
        'expiresIn',
        "set with the processor's `log` (its expiry processor deletes the export) or `expiryTag: true` (a lifecycle rule does): nothing else would",
        spec.expiresIn,
      )
  }
  if (spec.requestedBy !== undefined) {
    checkString('requestedBy', spec.requestedBy)
    if (!wellFormed(spec.requestedBy)) invalidOption('requestedBy', 'a string without NUL or lone surrogates', spec.requestedBy)
  }
  if (spec.fingerprint !== undefined) fingerprintOf(spec.fingerprint)
}

/** The export log's id of a job's export: `<queue>/<job id>`, each encoded as key values are (no `/` of their own). */
export function exportIdOf(job: { id?: string; queueName?: string }): string {
  return [job.queueName, String(job.id)]
    .filter((part) => part !== undefined)
    .map(encodeValue)
    .join('/')
}

export interface DeliveryContext {
  /** Signs a download link (S3: presigned; Azure: a SAS). */
  sign: LinkSigner
  /** The longest a link lives (the processor's `urlExpiresIn`). */
  urlExpiresIn: number
  log?: ExportLog
  notify?(notification: ExportNotification): unknown
  now(): Date
}

/** What a job committed, as the processor keeps it in the job's data until it completes. */
export interface Committed {
  /** This commit (a partitioned export's run, or one made at the commit). */
  run: string
  /** `csv.gz`: the format's extension and its compression's. */
  format: string
  location: S3Location
  rows: number
  bytes: number
  checksum?: ObjectChecksum
  /** A partitioned job's partitions (with the links the export signed, when they are still fresh). */
  partitions?: Array<{ values: Record<string, unknown>; rows: number; bytes: number; locations: S3Location[]; urls?: string[] }>
  /** When the job began (names' `{date}`, ms). */
  startedAt: number
  /** When it committed (ms): the export expires `expiresIn` after. */
  committedAt: number
}

export interface Delivered {
  /** The job's own entry (a partitioned job: its manifest). */
  entry: ExportLogEntry | NewExportLogEntry
  link: Link | undefined
  /** Each partition's entry, with links to each of its objects. */
  partitions: Array<{ entry: ExportLogEntry | NewExportLogEntry; urls: string[] }>
  /** Notifications that failed (recorded in the log, sent again by the expiry processor). */
  notifyErrors: ExportError[]
}

/** Records, links and notifies what a job committed (see the module's comment). */
export async function deliver(context: DeliveryContext, job: { id: string; exportId: string }, spec: DeliverySpec, committed: Committed): Promise<Delivered> {
  const { sign, urlExpiresIn, log, notify } = context
  const expiresAt = spec.expiresIn === undefined ? null : new Date(committed.committedAt + spec.expiresIn * 1000)
  const base = {
    exportId: job.exportId,
    jobId: job.id,
    run: committed.run,
    requestedBy: spec.requestedBy ?? null,
    fingerprint: spec.fingerprint === undefined ? null : fingerprintOf(spec.fingerprint),
    format: committed.format,
    bucket: committed.location.bucket,
    labels: spec.labels ?? null,
    createdAt: new Date(committed.committedAt),
    expiresAt,
    notify: notify !== undefined,
  }
  const name = (values: Record<string, unknown>) =>
    spec.filename === undefined
      ? null
      : fileNameFromTemplate(spec.filename, { jobId: job.id, date: new Date(committed.startedAt), values: { ...spec.labels, ...values } })
  const entries: NewExportLogEntry[] = [
    {
      ...base,
      id: job.exportId,
      partition: null,
      rows: committed.rows,
      bytes: committed.bytes,
      checksum: committed.checksum ?? null,
      keys: [committed.location.key],
      filename: committed.partitions ? null : name({}),
    },
    ...(committed.partitions ?? []).map((p) => ({
      ...base,
      id: `${job.exportId}/${Object.values(p.values).map(encodeValue).join('/')}`,
      partition: p.values,
      rows: p.rows,
      bytes: p.bytes,
      checksum: null,
      keys: p.locations.map((location) => location.key),
      filename: name(p.values),
    })),
  ]
  // The record first: an export the log does not hold would never expire (the attempt fails: ERR_STATE).
  // (Entries still to notify are this job's for an hour: the expiry processor does not send them meanwhile.)
  const notifyUntil = notify ? new Date(context.now().getTime() + NOTIFY_LEASE_MS) : undefined
  const stored: Array<ExportLogEntry | NewExportLogEntry> = log ? await log.record(entries, { notifyUntil }) : entries
  // Signed when first used, at the time of signing (a link never outlives the file, however long
  // notifying takes), and once: the result carries the very links the notifications sent.
  const signed = new Map<string, Promise<Link | undefined>>()
  const link = (entry: ExportLogEntry | NewExportLogEntry, index = 0): Promise<Link | undefined> => {
    const key = `${entry.id}\0${index}`
    let signing = signed.get(key)
    if (!signing) {
      // (A signature that failed is tried again, not kept.)
      signing = presignEntry(sign, entry, urlExpiresIn, context.now(), index).catch((error: unknown) => {
        signed.delete(key)
        throw error
      })
      signed.set(key, signing)
    }
    return signing
  }
  const notifyErrors: ExportError[] = []
  let inARow = 0
  // Each partition's customer first, then the job's own notification.
  for (const entry of [...stored.slice(1), stored[0]!]) {
    // (Not what was sent, nor what a later export at the same key replaced: no file to link to.)
    if (!notify || ('deletedAt' in entry && ((entry as ExportLogEntry).notifiedAt || (entry as ExportLogEntry).deletedAt))) continue
    let failure: ExportError | undefined
    if (inARow >= FAILURES_IN_A_ROW) {
      // The notifier is down: the rest wait for the expiry processor instead of holding the job.
      failure = new ExportError('ERR_NOTIFY', 'notify', `Not sent: the notifier failed ${FAILURES_IN_A_ROW} times in a row; the expiry processor sends it`)
    } else {
      try {
        await notify(notificationOf(entry, await link(entry)))
        inARow = 0
      } catch (error) {
        failure = notifyError(error)
        inARow++
      }
    }
    if (failure) notifyErrors.push(failure)
    // (A log that fails here leaves the entry unnotified: the expiry processor sends it when the lease above ends.)
    await log?.notified(entry.id, context.now(), failure?.message).catch(() => {})
  }
  const resign = spec.filename !== undefined || expiresAt !== null
  const partitions = await Promise.all(
    stored.slice(1).map(async (entry, i) => {
      const signed = committed.partitions![i]!.urls
      return { entry, urls: !resign && signed ? signed : await Promise.all(entry.keys.map(async (_key, index) => (await link(entry, index))?.url ?? '')) }
    }),
  )
  return { entry: stored[0]!, link: await link(stored[0]!), partitions, notifyErrors }
}

/** A notifier's failure as ERR_NOTIFY (ours are already). */
export const notifyError = (error: unknown): ExportError =>
  error instanceof ExportError && error.code === 'ERR_NOTIFY'
    ? error
    : new ExportError('ERR_NOTIFY', 'notify', `Notification failed: ${(error as Error)?.message ?? String(error)}`, { cause: error })

/** SHA-256 of a source's identity (`{ sql, params }`), as canonical JSON (keys sorted); ERR_INVALID_OPTION when it is not JSON. */
export function fingerprintOf(identity: unknown): string {
  let canonical: string | undefined
  try {
    canonical = JSON.stringify(identity, (_key, value: unknown) => {
      if (typeof value === 'bigint') return value.toString()
      if (value && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date))
        return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      return value
    })
  } catch (error) {
    invalidOption('fingerprint', `JSON (${(error as Error).message})`, identity)
  }
  return createHash('sha256')
    .update(canonical ?? 'undefined')
    .digest('hex')
}
