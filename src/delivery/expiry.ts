// The expiry processor: run on a schedule (a BullMQ job scheduler, or cron), it deletes the exports
// whose time has come (every object of each: a partition's parts, a partitioned export's manifest)
// and marks them deleted in the export log, then sends the notifications that failed or were never
// sent. Entries are leased (SKIP LOCKED, then a lease time): many workers may run it at once and
// each object is deleted once; an entry whose worker died is taken again when its lease ends.
import { invalidOption } from '../core/errors.js'
import { checkFunction, checkObject, checkPositiveInteger, checkString, checkTimerMs, optionNames } from '../core/options.js'
import { removeBlob, type AzureContainerLike } from '../sinks/azure/client.js'
import { loadS3, send, type S3ClientLike } from '../sinks/s3/client.js'
import type { ExportLog, ExportLogEntry } from './export-log.js'
import { notifyError } from './deliver.js'
import { notificationOf, presignEntry } from './links.js'
import type { ExportNotification } from './webhook.js'

export interface ExpiryOptions {
  /** Where the exports are: the S3 (or GCS) client the export processor wrote with. */
  s3?: S3ClientLike
  /**
   * Or the Azure container the export processor wrote to (`createExportProcessor({ container })`):
   * only the entries of that container are taken (a log shared with other stores keeps theirs).
   */
  container?: AzureContainerLike
  /**
   * With `s3`: only the entries in these buckets are taken. Give it when the log is shared with
   * an Azure processor (the log knows a bucket and a container only by name). Default: every entry.
   */
  buckets?: string[]
  log: ExportLog
  /**
   * Sends the notifications that failed, or that no attempt sent (a worker killed first: once the
   * lease its job took when it recorded them, an hour, has ended): the processor's `notify`.
   */
  notify?(notification: ExportNotification): unknown
  /** The longest a link in a notification sent here lives (never past the export's expiry). Default 86400. */
  urlExpiresIn?: number
  /** Entries deleted (and notified) per run at most. Default 500. */
  limit?: number
  /** How long a run holds an entry before another may take it (a dead worker's). Default 600,000 ms. */
  leaseMs?: number
  /** How long an entry whose deletion failed waits before the next try; a notification, this doubled after each failure (8 at most). Default 900,000 ms. */
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
  container: true,
  buckets: true,
  log: true,
  notify: true,
  urlExpiresIn: true,
  limit: true,
  leaseMs: true,
  retryMs: true,
  now: true,
})

/**
 * A processor for a BullMQ job scheduler that expires exports (docs/delivery.md#expiry):
 * `new Worker('export-expiry', createExpiryProcessor({ s3, log }), { connection })` (or `{ container, log }`) with
 * `queue.upsertJobScheduler('expire-exports', { every: 15 * 60_000 })`. Each run deletes up to
 * `limit` expired exports and marks them deleted (a key another live export names is kept: it is
 * that one's now), then, with `notify`, sends up to `limit` notifications still due. Resolves with
 * what it did (the job's return value).
 */
export function createExpiryProcessor(options: ExpiryOptions): () => Promise<ExpiryResult> {
  checkObject('options', options, EXPIRY_OPTION_NAMES)
  const { s3, container, log, notify, urlExpiresIn = 86_400, limit = 500, leaseMs = 600_000, retryMs = 900_000, now = () => new Date() } = options
  if (container === undefined && typeof s3?.send !== 'function') invalidOption('s3', 'an S3Client (or an Azure `container`)', s3)
  if (container !== undefined && typeof container?.getBlockBlobClient !== 'function')
    invalidOption('container', "a ContainerClient of '@azure/storage-blob'", container)
  if (container !== undefined && s3 !== undefined) invalidOption('s3', 'unset with an Azure `container` (one store per processor)', s3)
  if (options.buckets !== undefined) {
    if (container !== undefined) invalidOption('buckets', 'unset with an Azure `container` (its own entries only)', options.buckets)
    if (!Array.isArray(options.buckets) || options.buckets.length === 0) invalidOption('buckets', 'a non-empty array of bucket names', options.buckets)
    options.buckets.forEach((bucket, i) => checkString(`buckets[${i}]`, bucket))
  }
  const buckets = container ? [container.containerName] : options.buckets
  if (typeof log?.lease !== 'function') invalidOption('log', 'an export log (postgresExportLog)', log)
  if (notify !== undefined) checkFunction('notify', notify)
  checkPositiveInteger('urlExpiresIn', urlExpiresIn)
  checkPositiveInteger('limit', limit)
  for (const [name, value] of Object.entries({ leaseMs, retryMs })) checkTimerMs(name, value)
  checkFunction('now', now)
  const remove = container ? (_: string, blob: string) => removeBlob(container, blob) : objectRemover(s3!)
  const taking = () => ({ now: now(), limit, leaseMs, ...(buckets && { buckets }) })
  // (Checked again here: an export log of your own that leases another store's entries never has them acted on.)
  const notOurs = (entry: ExportLogEntry) =>
    buckets && !buckets.includes(entry.bucket)
      ? `In ${entry.bucket}, not this processor's store (${buckets.join(', ')}): the log ignored its buckets`
      : undefined

  return async () => {
    const result: ExpiryResult = { deleted: [], notified: [], failed: [] }
    // Each pass on the clock as it is then: a long first pass never shortens the second's leases.
    const deleted = await log.lease('expired', taking(), async (entry) => {
      try {
        const refused = notOurs(entry)
        if (refused) throw new Error(refused)
        // The download first (a manifest, then what it lists): no reader follows a link to a gap.
        for (const key of entry.deletable) await remove(entry.bucket, key)
      } catch (error) {
        result.failed.push({ id: entry.id, error: (error as Error).message })
        return { retryAt: new Date(now().getTime() + retryMs) }
      }
      return { deletedAt: now() }
    })
    result.deleted = deleted.filter((entry) => entry.deletedAt !== null).map((entry) => entry.id)
    if (!notify) return result
    const notified = await log.lease('unnotified', taking(), async (entry) => {
      const refused = notOurs(entry)
      if (refused) {
        result.failed.push({ id: entry.id, error: refused })
        return { retryAt: new Date(now().getTime() + retryMs) }
      }
      try {
        await notify(notificationOf(entry, await presignEntry(container ?? s3!, entry, urlExpiresIn, now())))
      } catch (error) {
        const failure = notifyError(error)
        result.failed.push({ id: entry.id, error: failure.message })
        // Twice as long after each failure: a mailbox that refuses for good is not written to every tick.
        return { notifyError: failure.message, retryAt: new Date(now().getTime() + retryMs * 2 ** entry.notifyFailures) }
      }
      return { notifiedAt: now(), notifyError: null }
    })
    result.notified = notified.filter((entry) => entry.notifiedAt !== null).map((entry) => entry.id)
    return result
  }
}

function objectRemover(s3: S3ClientLike): (bucket: string, key: string) => Promise<unknown> {
  const { DeleteObjectCommand } = loadS3()
  return (bucket, key) => send(s3, new DeleteObjectCommand({ Bucket: bucket, Key: key }))
}
