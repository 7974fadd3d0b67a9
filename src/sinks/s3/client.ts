// The S3 client, and the object commands every S3 writer shares (PutObject, GetObject,
// HeadObject, DeleteObject, ListObjectsV2): each constructed here only.
import { createHash } from 'node:crypto'
import { checksumOf, type ChecksumAlgorithm, type ObjectChecksum } from '../../core/checksum.js'
import { loadOptional } from '../../core/optional.js'

type S3Commands = typeof import('@aws-sdk/client-s3')

/** An `S3Client` of @aws-sdk/client-s3 (structural, so our types do not pin the SDK's). */
export interface S3ClientLike {
  send(command: never, options?: { abortSignal?: AbortSignal }): Promise<unknown>
}

/** Where an S3 writer writes, and what every request about its object must carry. */
export interface S3Target {
  client: S3ClientLike
  bucket: string
  key: string
  /** SSE-C: the object's 256-bit key, sent with every request that writes or reads it. */
  sseCustomerKey?: Uint8Array
  /** The account that must own the bucket: a request to another's bucket fails (403). */
  expectedBucketOwner?: string
}

/** What a request about the target's object carries: the bucket owner it expects and, where it reads or writes bytes, the SSE-C key. */
export function targetParams({ sseCustomerKey, expectedBucketOwner }: S3Target, bytes = true): object {
  return {
    ...(expectedBucketOwner !== undefined && { ExpectedBucketOwner: expectedBucketOwner }),
    ...(bytes && sseCustomerKey !== undefined && { SSECustomerAlgorithm: 'AES256', SSECustomerKey: Buffer.from(sseCustomerKey).toString('base64') }),
  }
}

export interface S3Location {
  bucket: string
  key: string
  etag?: string
  versionId?: string
}

export const loadS3 = (): S3Commands => loadOptional<S3Commands>('@aws-sdk/client-s3', '@aws-sdk/client-s3')

/**
 * Sends a command. Some stores (Ceph RGW) answer errors with an empty `<Message>`, which the SDK
 * turns into `UnknownError`: the message then names the error and its HTTP status instead.
 */
export async function send<T>(client: S3ClientLike, command: unknown, signal?: AbortSignal): Promise<T> {
  try {
    return (await client.send(command as never, signal ? { abortSignal: signal } : undefined)) as T
  } catch (error) {
    const e = error as Error & { $metadata?: { httpStatusCode?: number } }
    if (e instanceof Error && (e.message === '' || e.message === 'UnknownError') && e.name && e.name !== 'Error') {
      const status = e.$metadata?.httpStatusCode
      e.message = status ? `${e.name} (HTTP ${status})` : e.name
    }
    throw error
  }
}

/**
 * A multipart upload that no longer exists (aborted or completed): S3 answers `NoSuchUpload`;
 * Ceph RGW answers ListParts of a finished upload with `NoSuchKey`.
 */
export const isGone = (error: unknown): boolean => ['NoSuchUpload', 'NoSuchKey'].includes((error as Error | undefined)?.name ?? '')

/** The object parameters of a new object (PutObject, CreateMultipartUpload). */
export interface ObjectParams {
  ContentType?: string
  ContentEncoding?: string
  ContentDisposition?: string
  Metadata?: Record<string, string>
  StorageClass?: string
  ServerSideEncryption?: string
  SSEKMSKeyId?: string
  BucketKeyEnabled?: boolean
  /** URL-encoded tags: `a=1&b=2`. */
  Tagging?: string
  ObjectLockMode?: string
  ObjectLockRetainUntilDate?: Date
  ObjectLockLegalHoldStatus?: 'ON' | 'OFF'
}

/**
 * PutObject of a whole body. With a checksum algorithm (or the body's checksum, computed as it
 * came), the checksum goes with it: S3 refuses a body that differs (BadDigest), and the answer
 * says whether the store verified it. A `condition` (overwrite: false, ifMatch) goes with it too.
 */
export async function putObject(
  target: S3Target,
  body: Buffer,
  params: ObjectParams = {},
  algorithm?: ChecksumAlgorithm | ObjectChecksum,
  condition: WriteCondition = {},
): Promise<S3Location & { checksum?: ObjectChecksum }> {
  const s3 = loadS3()
  const { client, bucket, key } = target
  const checksum = typeof algorithm === 'string' ? await checksumOf(algorithm, body) : algorithm
  const sum = checksum && { [checksumField(checksum.algorithm)]: checksum.value }
  const command = new s3.PutObjectCommand({ ...(params as object), ...targetParams(target), ...sum, ...condition, Bucket: bucket, Key: key, Body: body })
  const result = await send<{ ETag?: string; VersionId?: string } & Record<string, unknown>>(client, command).catch(async (error: unknown) => {
    // A lost answer the SDK sent again meets our own object: the condition held for the first request.
    // Refused at the first attempt, the object was there before us, whatever it holds.
    const attempts = (error as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1
    if (!isPreconditionFailed(error) || attempts < 2) throw error
    // (The ETag of an object under SSE-KMS or SSE-C is no MD5: such a retry stays refused.)
    const head = await headObject(target).catch(() => undefined)
    if (head?.ETag === `"${createHash('md5').update(body).digest('hex')}"`) return { ETag: head.ETag, VersionId: head.VersionId }
    throw error
  })
  const location = { bucket, key, etag: result.ETag, versionId: result.VersionId }
  return checksum ? { ...location, checksum: storeVerified(checksum, result) } : location
}

/**
 * The condition of a write that must not replace what it does not expect: `IfNoneMatch: '*'` (no
 * object at the key) or `IfMatch` (the object with this ETag). S3 checks it at PutObject and
 * CompleteMultipartUpload (412 PreconditionFailed).
 */
export type WriteCondition = { IfNoneMatch: '*' } | { IfMatch: string } | Record<string, never>

/** A conditional write the store refused (412): the object is not as the condition said. */
export const isPreconditionFailed = (error: unknown): boolean =>
  (error as Error | undefined)?.name === 'PreconditionFailed' ||
  (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode === 412

/**
 * Whether the object at the key holds what the condition expects (a HeadObject before the first
 * byte). A principal that may write but not read the key is answered 403: that tells nothing, and
 * the condition sent with the commit decides alone.
 */
export async function checkCondition(target: S3Target, condition: WriteCondition): Promise<string | undefined> {
  if (!('IfNoneMatch' in condition) && !('IfMatch' in condition)) return undefined
  const where = `s3://${target.bucket}/${target.key}`
  const forbidden = (error: { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode === 403
  if ('IfNoneMatch' in condition) {
    // Asked without an SSE-C key: an object encrypted with one answers 400, which also says it exists.
    const head = await headObject({ ...target, sseCustomerKey: undefined }).catch((error: { $metadata?: { httpStatusCode?: number } }) => {
      if (error.$metadata?.httpStatusCode === 400) return {}
      if (forbidden(error)) return undefined
      throw error
    })
    return head ? `an object exists at ${where} (overwrite: false)` : undefined
  }
  let unknown = false
  const head = await headObject(target).catch((error: { $metadata?: { httpStatusCode?: number } }) => {
    if (!forbidden(error)) throw error
    unknown = true
    return undefined
  })
  if (unknown) return undefined
  if (head?.ETag !== condition.IfMatch) return `the object at ${where} is ${head ? `${head.ETag}, not ${condition.IfMatch}` : 'missing'} (ifMatch)`
  return undefined
}

/** S3's name of a checksum in requests and answers: `ChecksumCRC64NVME`. */
export const checksumField = (algorithm: ChecksumAlgorithm) => `Checksum${algorithm}` as const

/** A checksum sent with a write, and whether the store's answer gave the same one back. */
export function storeVerified(checksum: ObjectChecksum, answer: object): ObjectChecksum {
  return { ...checksum, verifiedByStore: (answer as Record<string, unknown>)[checksumField(checksum.algorithm)] === checksum.value }
}

/** The bytes of an object, or `undefined` when there is none. */
export async function getObject(target: S3Target): Promise<Buffer | undefined> {
  const s3 = loadS3()
  const { client, bucket, key } = target
  try {
    const command = new s3.GetObjectCommand({ ...targetParams(target), Bucket: bucket, Key: key })
    const object = await send<{ Body: { transformToByteArray(): Promise<Uint8Array> } }>(client, command)
    return Buffer.from(await object.Body.transformToByteArray())
  } catch (error) {
    if ((error as Error).name === 'NoSuchKey') return undefined
    throw error
  }
}

/** HeadObject: the object's ETag and version, or `undefined` when there is none (404); other errors are thrown. */
export async function headObject(target: S3Target): Promise<{ ETag?: string; VersionId?: string } | undefined> {
  const s3 = loadS3()
  const { client, bucket, key } = target
  const command = new s3.HeadObjectCommand({ ...targetParams(target), Bucket: bucket, Key: key })
  return send<{ ETag?: string; VersionId?: string }>(client, command).catch((error: unknown) => {
    const { name, $metadata } = error as Error & { $metadata?: { httpStatusCode?: number } }
    if (name === 'NotFound' || name === 'NoSuchKey' || $metadata?.httpStatusCode === 404) return undefined
    throw error
  })
}

/** DeleteObject (of one version, when given); nothing there is not an error. */
export async function deleteObject(target: S3Target, versionId?: string): Promise<void> {
  const s3 = loadS3()
  const { client, bucket, key } = target
  await send(client, new s3.DeleteObjectCommand({ ...targetParams(target, false), Bucket: bucket, Key: key, VersionId: versionId }))
}

/** Every key under a prefix (ListObjectsV2, page by page). */
export async function listKeys(client: S3ClientLike, bucket: string, prefix: string): Promise<string[]> {
  const s3 = loadS3()
  const keys: string[] = []
  let ContinuationToken: string | undefined
  do {
    const page = await send<{ Contents?: Array<{ Key?: string }>; NextContinuationToken?: string }>(
      client,
      new s3.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken }),
    )
    for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key)
    ContinuationToken = page.NextContinuationToken
  } while (ContinuationToken !== undefined)
  return keys
}
