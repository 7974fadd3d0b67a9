// The expiry processor: run on a schedule (a BullMQ job scheduler, or cron), it deletes the exports
// whose time has come (every object of each: a partition's parts, a partitioned job's manifest) and
// marks them deleted in the export log, then sends again the notifications that had failed. Entries
// are claimed with SKIP LOCKED: many workers may run it at once and each object is deleted once.
import { invalidOption } from '../core/errors.js'
import { checkFunction, checkObject, checkPositiveInteger, optionNames } from '../core/options.js'
import { loadS3, send, type S3ClientLike } from '../sinks/s3/client.js'
import type { ExportLog } from './export-log.js'
import { presignEntry, notificationOf, notifyError } from './deliver.js'
import type { ExportNotification } from './webhook.js'

export interface ExpiryOptions {
  s3: S3ClientLike
  log: ExportLog
  /** Notifies again the entries whose notification failed (the processor's `notify`). */
  notify?(notification: ExportNotification): unknown
  /** The longest a link in a notification sent again lives (never past the export's expiry). Default 86400. */
  urlExpiresIn?: number
  /** Entries deleted (and notified) per run at most. Default 500. */
  limit?: number
  /** The clock (tests inject one). Default `() => new Date()`. */
  now?(): Date
}

export interface ExpiryResult {
  /** The entries deleted, by id. */
  deleted: string[]
  /** The entries notified again, by id. */
  notified: string[]
  /** What failed (tried again at the next run). */
  failed: Array<{ id: string; error: string }>
}

const EXPIRY_OPTION_NAMES = optionNames<ExpiryOptions>({ s3: true, log: true, notify: true, urlExpiresIn: true, limit: true, now: true })

/**
 * A processor for a BullMQ job scheduler that expires exports (docs/delivery.md#expiry):
 * `new Worker('export-expiry', createExpiryProcessor({ s3, log }), { connection })` with
 * `queue.upsertJobScheduler('expire-exports', { every: 15 * 60_000 })`. Each run deletes up to
 * `limit` expired exports and marks them deleted, then notifies again up to `limit` entries whose
 * notification failed. Resolves with what it did (the job's return value).
 */
export function createExpiryProcessor(options: ExpiryOptions): () => Promise<ExpiryResult> {
  checkObject('options', options, EXPIRY_OPTION_NAMES)
  const { s3, log, notify, urlExpiresIn = 86_400, limit = 500, now = () => new Date() } = options
  if (typeof s3?.send !== 'function') invalidOption('s3', 'an S3Client', s3)
  if (typeof log?.claim !== 'function') invalidOption('log', 'an export log (postgresExportLog)', log)
  if (notify !== undefined) checkFunction('notify', notify)
  checkPositiveInteger('urlExpiresIn', urlExpiresIn)
  checkPositiveInteger('limit', limit)
  checkFunction('now', now)
  const { DeleteObjectCommand } = loadS3()

  return async () => {
    const result: ExpiryResult = { deleted: [], notified: [], failed: [] }
    const at = now()
    await log.claim('expired', at, limit, async (entry) => {
      try {
        // The download first (a manifest, then what it lists): no reader follows a link to a gap.
        for (const key of entry.keys) await send(s3, new DeleteObjectCommand({ Bucket: entry.bucket, Key: key }))
      } catch (error) {
        result.failed.push({ id: entry.id, error: (error as Error).message })
        return {}
      }
      result.deleted.push(entry.id)
      return { deletedAt: at }
    })
    if (notify)
      await log.claim('unnotified', at, limit, async (entry) => {
        try {
          await notify(notificationOf(entry, await presignEntry(s3, entry, urlExpiresIn, at)))
        } catch (error) {
          const failure = notifyError(error)
          result.failed.push({ id: entry.id, error: failure.message })
          return { notifyError: failure.message }
        }
        result.notified.push(entry.id)
        return { notifiedAt: now(), notifyError: null }
      })
    return result
  }
}
