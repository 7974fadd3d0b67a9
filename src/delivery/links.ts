// Links to what the export log holds, and the notification of an entry: shared by the delivery
// after a job's commit and by the expiry processor that sends a failed notification again.
import { ExportError } from '../core/errors.js'
import type { S3ClientLike } from '../sinks/s3/client.js'
import { MAX_PRESIGN_SECONDS, presignDownload } from '../sinks/s3/presign.js'
import type { AzureContainerLike } from '../sinks/azure/client.js'
import { azureDownloadUrl } from '../sinks/azure/sas.js'
import type { ExportLogEntry, NewExportLogEntry } from './export-log.js'
import type { ExportNotification } from './webhook.js'

/** Signs a link to `key` in `bucket` (a container), living `expiresIn` seconds, saving as `filename`. */
export type LinkSigner = (bucket: string, key: string, expiresIn: number, filename?: string) => Promise<string>

/** The signer of presigned S3 GET URLs, or of an Azure container's SAS URLs (the entry's bucket is the container). */
export function signerOf(store: S3ClientLike | AzureContainerLike | LinkSigner): LinkSigner {
  if (typeof store === 'function') return store
  if ('getBlockBlobClient' in store)
    return async (container, blobName, expiresIn, filename) => {
      // (A SAS names its container: one of another container's blob would download the wrong blob.)
      if (container !== store.containerName)
        throw new ExportError('ERR_INVALID_OPTION', 'options', `Cannot sign a link to az://${container}/${blobName} with the container ${store.containerName}`)
      return azureDownloadUrl(store, { blobName, expiresIn, ...(filename ? { filename } : {}) })
    }
  return (bucket, key, expiresIn, filename) => presignDownload(store, { bucket, key, expiresIn, ...(filename ? { filename } : {}) })
}

/** A presigned link, and when it stops working. */
export interface Link {
  url: string
  expiresAt: Date
}

/**
 * A presigned link to an entry's object `index` (default its first: what to download), living
 * `seconds` but never past the entry's expiry nor SigV4's 7 days, saving under the entry's file
 * name (an entry of one object); none for an entry deleted or past its expiry. `now` is the
 * signing time (give the real time: S3 counts the lifetime from the signature's own clock).
 * `store`: the S3 client, or the Azure container (a SAS link) the entry's export went to.
 */
export async function presignEntry(
  store: S3ClientLike | AzureContainerLike | LinkSigner,
  entry: ExportLogEntry | NewExportLogEntry,
  seconds: number,
  now: Date,
  index = 0,
): Promise<Link | undefined> {
  if ('deletedAt' in entry && entry.deletedAt) return undefined
  const left = entry.expiresAt ? Math.floor((entry.expiresAt.getTime() - now.getTime()) / 1000) : Infinity
  const expiresIn = Math.min(seconds, left, MAX_PRESIGN_SECONDS)
  if (expiresIn <= 0) return undefined
  const filename = entry.keys.length === 1 && entry.filename ? entry.filename : undefined
  const url = await signerOf(store)(entry.bucket, entry.keys[index]!, expiresIn, filename)
  return { url, expiresAt: new Date(now.getTime() + expiresIn * 1000) }
}

/** The notification of an entry, with its link: a partition's is `partition.completed`. */
export function notificationOf(entry: ExportLogEntry | NewExportLogEntry, link: Link | undefined): ExportNotification {
  return {
    event: entry.partition ? 'partition.completed' : 'export.completed',
    jobId: entry.jobId,
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
