// Links to what the export log holds, and the notification of an entry: shared by the delivery
// after a job's commit and by the expiry processor that sends a failed notification again.
import type { S3ClientLike } from '../sinks/s3/client.js'
import { MAX_PRESIGN_SECONDS, presignDownload } from '../sinks/s3/presign.js'
import type { ExportLogEntry, NewExportLogEntry } from './export-log.js'
import type { ExportNotification } from './webhook.js'

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
 */
export async function presignEntry(
  s3: S3ClientLike,
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
  const url = await presignDownload(s3, { bucket: entry.bucket, key: entry.keys[index]!, expiresIn, ...(filename ? { filename } : {}) })
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
