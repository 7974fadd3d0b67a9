// The expiry processor: run on a schedule (a BullMQ job scheduler, or cron), it deletes the exports
// whose time has come (every object of each: a partition's parts, a partitioned export's manifest)
// and marks them deleted in the export log, then sends the notifications that failed or were never
// sent. Entries are leased (SKIP LOCKED, then a lease time): many workers may run it at once and
// each object is deleted once; an entry whose worker died is taken again when its lease ends.
import { invalidOption } from '../core/errors.js'
import { checkFunction, checkObject, checkPositiveInteger, checkTimerMs, optionNames } from '../core/options.js'
import { loadS3, send, type S3ClientLike } from '../sinks/s3/client.js'
import type { ExportLog } from './export-log.js'
import { notifyError } from './deliver.js'
import { notificationOf, presignEntry } from './links.js'
import type { ExportNotification } from './webhook.js'

export interface ExpiryOptions {
  s3: S3ClientLike
  log: ExportLog
  /** Sends the notifications that failed, or that no attempt sent (a worker killed before): the processor's `notify`. */
  notify?(notification: ExportNotification): unknown
  /** The longest a link in a notification sent here lives (never past the export's expiry). Default 86400. */
  urlExpiresIn?: number
  /** Entries deleted (and notified) per run at most. Default 500. */
  limit?: number
  /** How long a run holds an entry before another may take it (a dead worker's). Default 600,000 ms. */
  leaseMs?: number
  /** How long a notification no attempt reported is left to its job before it is sent here. Default 3,600,000 ms. */
  graceMs?: number
  /** How long an entry whose deletion or notification failed waits before the next try. Default 900,000 ms. */
  retryMs?: number
  /** The clock (tests inject one). Default `() => new Date()`. */
  now?(): Date
}

export interface ExpiryResult {
  /** The entries deleted, by id. */
  deleted: string[]
  /** The entries notified, by id. */
  notified: string[]
  /** What failed (tried again after `retryMs`). */
  failed: Array<{ id: string; error: string }>
}

const EXPIRY_OPTION_NAMES = optionNames<ExpiryOptions>({
  s3: true,
  log: true,
  notify: true,
  urlExpiresIn: true,
  limit: true,
  leaseMs: true,
  graceMs: true,
  retryMs: true,
  now: true,
})

/**
 * A processor for a BullMQ job scheduler that expires exports (docs/delivery.md#expiry):
 * `new Worker('export-expiry', createExpiryProcessor({ s3, log }), { connection })` with
 * `queue.upsertJobScheduler('expire-exports', { every: 15 * 60_000 })`. Each run deletes up to
 * `limit` expired exports and marks them deleted (a key another live export names is kept: it is
 * that one's now), then, with `notify`, sends up to `limit` notifications still due. Resolves with
 * what it did (the job's return value).
 */
export function createExpiryProcessor(options: ExpiryOptions): () => Promise<ExpiryResult> {
  checkObject('options', options, EXPIRY_OPTION_NAMES)
  const { s3, log, notify, urlExpiresIn = 86_400, limit = 500, leaseMs = 600_000, graceMs = 3_600_000, retryMs = 900_000, now = () => new Date() } = options
  if (typeof s3?.send !== 'function') invalidOption('s3', 'an S3Client', s3)
  if (typeof log?.lease !== 'function') invalidOption('log', 'an export log (postgresExportLog)', log)
  if (notify !== undefined) checkFunction('notify', notify)
  checkPositiveInteger('urlExpiresIn', urlExpiresIn)
  checkPositiveInteger('limit', limit)
  for (const [name, value] of Object.entries({ leaseMs, graceMs, retryMs })) checkTimerMs(name, value)
  checkFunction('now', now)
  const { DeleteObjectCommand } = loadS3()

  return async () => {
    const result: ExpiryResult = { deleted: [], notified: [], failed: [] }
    const at = now()
    const retryAt = new Date(at.getTime() + retryMs)
    const lease = { now: at, limit, leaseMs, graceMs }
    await log.lease('expired', lease, async (entry) => {
      try {
        // The download first (a manifest, then what it lists): no reader follows a link to a gap.
        for (const key of entry.deletable) await send(s3, new DeleteObjectCommand({ Bucket: entry.bucket, Key: key }))
      } catch (error) {
        result.failed.push({ id: entry.id, error: (error as Error).message })
        return { retryAt }
      }
      result.deleted.push(entry.id)
      return { deletedAt: at }
    })
    if (notify)
      await log.lease('unnotified', lease, async (entry) => {
        try {
          await notify(notificationOf(entry, await presignEntry(s3, entry, urlExpiresIn, now())))
        } catch (error) {
          const failure = notifyError(error)
          result.failed.push({ id: entry.id, error: failure.message })
          return { notifyError: failure.message, retryAt }
        }
        result.notified.push(entry.id)
        return { notifiedAt: now(), notifyError: null }
      })
    return result
  }
}
