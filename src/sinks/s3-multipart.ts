import { createHash } from 'node:crypto'
import { loadOptional } from '../optional.js'

// The S3 calls every multipart writer needs, in one place: s3Sink (and so split objects) and the
// resumable upload of export jobs.

type S3Commands = typeof import('@aws-sdk/client-s3')

/** An `S3Client` of @aws-sdk/client-s3 (structural, so our types do not pin the SDK's). */
export interface S3ClientLike {
  send(command: never, options?: { abortSignal?: AbortSignal }): Promise<unknown>
}

export const loadS3 = (): S3Commands => loadOptional<S3Commands>('@aws-sdk/client-s3', '@aws-sdk/client-s3')

export const send = <T>(client: S3ClientLike, command: unknown, signal?: AbortSignal): Promise<T> =>
  client.send(command as never, signal ? { abortSignal: signal } : undefined) as Promise<T>

const isNoSuchUpload = (error: unknown) => (error as Error | undefined)?.name === 'NoSuchUpload'

// S3: "if any part uploads are currently in progress, those part uploads might or might not
// succeed. As a result, it might be necessary to abort a given multipart upload multiple times".
const ABORT_ROUNDS = 5

/**
 * Aborts a multipart upload, then lists its parts and aborts again while any remain (parts that
 * were in flight may still land after an abort). A missing upload (already aborted or completed)
 * is not an error. Throws when parts still remain after a few rounds.
 */
export async function abortUpload(client: S3ClientLike, bucket: string, key: string, uploadId: string): Promise<void> {
  const s3 = loadS3()
  for (let round = 1; round <= ABORT_ROUNDS; round++) {
    try {
      await send(client, new s3.AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
      const listed = await send<{ Parts?: unknown[] }>(client, new s3.ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
      if (!listed.Parts?.length) return
    } catch (error) {
      if (isNoSuchUpload(error)) return
      throw error
    }
    await new Promise((resolve) => setTimeout(resolve, 100 * round))
  }
  throw new Error(`Multipart upload ${uploadId} of ${key} still holds parts after ${ABORT_ROUNDS} aborts`)
}

/** Aborts every open multipart upload of `key` except `keep` (uploads a killed attempt left behind). */
export async function abortOtherUploads(client: S3ClientLike, bucket: string, key: string, keep?: string): Promise<void> {
  const s3 = loadS3()
  let KeyMarker: string | undefined
  let UploadIdMarker: string | undefined
  do {
    const page = await send<{
      Uploads?: Array<{ Key?: string; UploadId?: string }>
      IsTruncated?: boolean
      NextKeyMarker?: string
      NextUploadIdMarker?: string
    }>(client, new s3.ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key, KeyMarker, UploadIdMarker }))
    for (const upload of page.Uploads ?? []) {
      if (upload.Key === key && upload.UploadId && upload.UploadId !== keep) await abortUpload(client, bucket, key, upload.UploadId)
    }
    KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined
    UploadIdMarker = page.NextUploadIdMarker
  } while (KeyMarker !== undefined)
}

/**
 * The ETag S3 gives an object assembled from these parts: the MD5 of the parts' binary MD5s, a
 * dash and the part count, quoted. Lets a writer whose CompleteMultipartUpload answer was lost
 * tell its own completed object from any other.
 */
export function multipartETag(parts: ReadonlyArray<{ ETag?: string }>): string {
  const md5s = Buffer.concat(parts.map((part) => Buffer.from((part.ETag ?? '').replace(/"/g, ''), 'hex')))
  return `"${createHash('md5').update(md5s).digest('hex')}-${parts.length}"`
}

/**
 * CompleteMultipartUpload. A completion whose answer was lost, retried by the SDK, finds the upload
 * gone: if the object at the key is the one these parts make (its multipart ETag), the upload did
 * complete and that is the result. Otherwise the error is thrown (`NoSuchUpload`: aborted).
 */
export async function completeUpload(
  client: S3ClientLike,
  bucket: string,
  key: string,
  uploadId: string,
  parts: ReadonlyArray<{ PartNumber: number; ETag: string }>,
): Promise<{ ETag?: string; VersionId?: string }> {
  const s3 = loadS3()
  try {
    return await send(client, new s3.CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: [...parts] } }))
  } catch (error) {
    if (!isNoSuchUpload(error)) throw error
    const head = await send<{ ETag?: string; VersionId?: string }>(client, new s3.HeadObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined)
    if (parts.length > 0 && head?.ETag === multipartETag(parts)) return head
    throw error
  }
}
