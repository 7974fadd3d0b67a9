// Tags and Object Lock of a completed multipart object, made sure of: some stores (Ceph RGW 16)
// keep them from a PutObject but drop them from CreateMultipartUpload. A completed object that
// lacks them gets them set (PutObjectTagging, PutObjectRetention, PutObjectLegalHold) before the
// export reports success; a store that refuses that fails the export, naming the object.
import { loadS3, send, targetParams, type S3Target } from './client.js'

export interface ObjectSettings {
  tags?: Record<string, string>
  objectLock?: { mode?: 'GOVERNANCE' | 'COMPLIANCE'; retainUntil?: Date; legalHold?: boolean }
}

/** Sets on the object (its version) the tags and Object Lock it was asked to have and does not. */
export async function ensureObjectSettings(target: S3Target, versionId: string | undefined, { tags, objectLock }: ObjectSettings): Promise<void> {
  if (tags === undefined && objectLock === undefined) return
  const s3 = loadS3()
  const { client, bucket, key } = target
  const object = { ...targetParams(target, false), Bucket: bucket, Key: key, VersionId: versionId }
  const head = await send<{ TagCount?: number; ObjectLockMode?: string; ObjectLockLegalHoldStatus?: string }>(
    client,
    new s3.HeadObjectCommand({ ...targetParams(target), Bucket: bucket, Key: key, VersionId: versionId }),
  )
  const TagSet = Object.entries(tags ?? {}).map(([Key, Value]) => ({ Key, Value }))
  if (TagSet.length > 0 && !head.TagCount) await send(client, new s3.PutObjectTaggingCommand({ ...object, Tagging: { TagSet } }))
  if (objectLock?.mode !== undefined && head.ObjectLockMode === undefined) {
    const Retention = { Mode: objectLock.mode, RetainUntilDate: objectLock.retainUntil }
    await send(client, new s3.PutObjectRetentionCommand({ ...object, Retention }))
  }
  const Status = objectLock?.legalHold === undefined ? undefined : objectLock.legalHold ? 'ON' : 'OFF'
  if (Status !== undefined && (head.ObjectLockLegalHoldStatus ?? 'OFF') !== Status)
    await send(client, new s3.PutObjectLegalHoldCommand({ ...object, LegalHold: { Status } }))
}
