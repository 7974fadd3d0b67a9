// One multipart upload, in the manner of lib-storage's Upload but for writers that must grow
// parts, continue an upload after a crash and tell a completed upload from an aborted one: every
// use of CreateMultipartUpload, UploadPart, ListParts, CompleteMultipartUpload,
// AbortMultipartUpload and ListMultipartUploads is here. s3Sink, the resumable job upload, shard
// pieces and split objects all write through it.
import { createHash } from 'node:crypto'
import { checksumOf, combineAll, type ChecksumAlgorithm, type ObjectChecksum } from '../../core/checksum.js'
import { invalidOption } from '../../core/errors.js'
import {
  checksumField,
  headObject,
  isGone,
  loadS3,
  send,
  storeVerified,
  targetParams,
  type ObjectParams,
  type WriteCondition,
  type S3ClientLike,
  type S3Target,
} from './client.js'

const MiB = 1024 * 1024
/** S3's smallest part but the last. */
export const MIN_PART_SIZE = 5 * MiB
const MAX_PART_SIZE = 5 * 1024 * MiB
/** S3's most parts in one upload. */
export const MAX_PARTS = 10_000
const PARTS_PER_DOUBLING = 1_000

/** Size of part `partNumber` (1-based) for a start size: doubled every 1,000 parts, capped at 5 GiB. */
export function partSizeFor(partNumber: number, partSize: number): number {
  return Math.min(MAX_PART_SIZE, partSize * 2 ** Math.floor((partNumber - 1) / PARTS_PER_DOUBLING))
}

/** Checks a part size option: an integer from 5 MiB to 5 GiB (ERR_INVALID_OPTION naming it). */
export function checkPartSize(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < MIN_PART_SIZE || (value as number) > MAX_PART_SIZE)
    invalidOption(name, 'an integer from 5 MiB (5242880) to 5 GiB', value)
  return value as number
}

/** A part S3 has: its number and ETag, as CompleteMultipartUpload lists it, and its checksum. */
export interface UploadedPart {
  PartNumber: number
  ETag: string
  /** The part's full checksum, when its upload has an algorithm (S3 verified it on arrival). */
  checksum?: ObjectChecksum
}

/** The object's checksum from its parts', when every part has one of the upload's algorithm. */
export function wholeChecksum(parts: ReadonlyArray<{ checksum?: ObjectChecksum }>, algorithm: ChecksumAlgorithm | undefined): ObjectChecksum | undefined {
  const sums = parts.map((part) => part.checksum)
  if (algorithm === undefined || !sums.every((sum) => sum?.algorithm === algorithm)) return undefined
  return combineAll(sums as ObjectChecksum[])
}

/** What a new upload says of its checksum: the full-object algorithm. */
const checksumParams = (algorithm: ChecksumAlgorithm | undefined): object =>
  algorithm === undefined ? {} : { ChecksumAlgorithm: algorithm, ChecksumType: 'FULL_OBJECT' }

/**
 * The ETag S3 gives an object assembled from these parts: the MD5 of the parts' binary MD5s, a
 * dash and the part count, quoted. Lets a writer whose CompleteMultipartUpload answer was lost
 * tell its own completed object from any other.
 */
export function multipartETag(parts: ReadonlyArray<{ ETag?: string }>): string {
  const md5s = Buffer.concat(parts.map((part) => Buffer.from((part.ETag ?? '').replace(/"/g, ''), 'hex')))
  return `"${createHash('md5').update(md5s).digest('hex')}-${parts.length}"`
}

// S3: "if any part uploads are currently in progress, those part uploads might or might not
// succeed. As a result, it might be necessary to abort a given multipart upload multiple times".
const ABORT_ROUNDS = 5
/** How far the store's clock may be behind ours when uploads "begun since" a request are looked for. */
const CLOCK_SKEW_MS = 60_000

/** A store's refusal (a 4xx answer): the request changed nothing. */
const refused = (error: unknown): boolean => {
  const status = (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode
  return status !== undefined && status >= 400 && status < 500
}

export class MultipartUpload {
  readonly #target: S3Target
  readonly uploadId: string
  /** The full-object checksum the upload was created with (its parts carry theirs, its completion the whole one). */
  readonly checksum: ChecksumAlgorithm | undefined

  /** An upload that exists already (e.g. one a checkpoint names). */
  constructor(target: S3Target, uploadId: string, checksum?: ChecksumAlgorithm) {
    this.#target = target
    this.uploadId = uploadId
    this.checksum = checksum
  }

  /**
   * CreateMultipartUpload. Not cancellable on purpose: once S3 has created it, we must learn its id
   * to abort it. A request the SDK had to send again (a lost answer, a timeout) may have created
   * an upload whose id never reached us: the uploads of the key begun since the first request,
   * other than the one we got, are aborted (after a failed create: all of them).
   */
  static async create(target: S3Target, params: ObjectParams = {}, checksum?: ChecksumAlgorithm): Promise<MultipartUpload> {
    const s3 = loadS3()
    const { client, bucket, key } = target
    const since = new Date(Date.now() - CLOCK_SKEW_MS)
    let created: { UploadId: string; $metadata?: { attempts?: number } }
    try {
      const command = new s3.CreateMultipartUploadCommand({
        ...(params as object),
        ...targetParams(target),
        ...checksumParams(checksum),
        Bucket: bucket,
        Key: key,
      })
      created = await send(client, command)
    } catch (error) {
      // A refusal (4xx) created nothing; anything else may have.
      if (!refused(error)) await abortOtherUploads(target, undefined, since).catch(() => {})
      throw error
    }
    // Best effort: uploads that cannot be listed or aborted (no ListBucketMultipartUploads right)
    // must not fail the export, nor lose the upload we did get.
    if ((created.$metadata?.attempts ?? 1) > 1) await abortOtherUploads(target, created.UploadId, since).catch(() => {})
    return new MultipartUpload(target, created.UploadId, checksum)
  }

  /** Where the upload goes. */
  get target(): S3Target {
    return this.#target
  }

  /**
   * UploadPart (the SDK retries a failed request); its ETag as S3 gives it. An upload with a
   * checksum sends the part's (`checksum`, if the caller computed it as the bytes came), which S3
   * verifies on arrival (BadDigest: the part is refused).
   */
  async uploadPart(PartNumber: number, body: Buffer, signal?: AbortSignal, checksum?: ObjectChecksum): Promise<UploadedPart> {
    const s3 = loadS3()
    const { client, bucket, key } = this.#target
    const algorithm = this.checksum
    if (algorithm !== undefined && checksum?.algorithm !== algorithm) checksum = await checksumOf(algorithm, body)
    const sum = checksum && { [checksumField(checksum.algorithm)]: checksum.value }
    const command = new s3.UploadPartCommand({
      ...targetParams(this.#target),
      ...sum,
      Bucket: bucket,
      Key: key,
      UploadId: this.uploadId,
      PartNumber,
      Body: body,
    })
    const { ETag } = await send<{ ETag: string }>(client, command, signal)
    return checksum ? { PartNumber, ETag, checksum } : { PartNumber, ETag }
  }

  /** Whether the upload still exists (ListParts of one part); an aborted or completed one does not. */
  async exists(): Promise<boolean> {
    return this.#listParts(1).then(
      () => true,
      (error: unknown) => {
        if (isGone(error)) return false
        throw error
      },
    )
  }

  /**
   * CompleteMultipartUpload: the commit point. A completion that fails while the upload is gone
   * (a lost answer the SDK retried into `NoSuchUpload`; Ceph RGW's 500 for a finished upload) is
   * recognised by the object's multipart ETag: if the object at the key is the one these parts
   * make, the upload did complete and that is the result; otherwise an error named `NoSuchUpload`
   * is thrown (the completion's error as its cause), or the completion's own error while the
   * upload still exists or the object cannot be told. An answer without an ETag (Ceph RGW) is completed by
   * HeadObject. An upload with a checksum sends the whole object's, combined from its parts', which
   * S3 verifies against the object it assembles (BadDigest: nothing is completed); `checksum`
   * says whether the store gave it back. A `condition` (overwrite: false, ifMatch) goes with it.
   */
  async complete(
    parts: ReadonlyArray<UploadedPart>,
    condition: WriteCondition = {},
  ): Promise<{ etag?: string; versionId?: string; checksum?: ObjectChecksum }> {
    const s3 = loadS3()
    const { client, bucket, key } = this.#target
    const whole = wholeChecksum(parts, this.checksum)
    const field = whole && checksumField(whole.algorithm)
    const Parts = parts.map(({ PartNumber, ETag, checksum }) => (field && checksum ? { PartNumber, ETag, [field]: checksum.value } : { PartNumber, ETag }))
    const sum = field && { [field]: whole.value, ChecksumType: 'FULL_OBJECT' as const }
    const input = { ...targetParams(this.#target), ...sum, ...condition, Bucket: bucket, Key: key, UploadId: this.uploadId, MultipartUpload: { Parts } }
    const command = new s3.CompleteMultipartUploadCommand(input)
    let result: { ETag?: string; VersionId?: string }
    try {
      result = await send(client, command)
    } catch (error) {
      if (await this.exists().catch(() => true)) throw error // still open (or unknown): not completed
      // The object cannot be told (HeadObject failed): the completion's own error stands.
      const landed = await this.completedWith(parts).catch(() => {
        throw error
      })
      if (landed) return { ...landed, checksum: whole && { ...whole, verifiedByStore: false } }
      throw Object.assign(new Error(`The multipart upload ${this.uploadId} of ${key} no longer exists`, { cause: error }), { name: 'NoSuchUpload' })
    }
    const checksum = whole && storeVerified(whole, result)
    if (result.ETag) return { etag: result.ETag, versionId: result.VersionId, checksum }
    // Completed: a HeadObject that fails only costs the ETag.
    const head = await headObject(this.#target).catch(() => undefined)
    return { etag: head?.ETag, versionId: result.VersionId ?? head?.VersionId, checksum }
  }

  /** The object at the key, if it is the one these parts make (by its multipart ETag). */
  async completedWith(parts: ReadonlyArray<{ ETag?: string }>): Promise<{ etag?: string; versionId?: string } | undefined> {
    if (parts.length === 0) return undefined
    const head = await headObject(this.#target)
    return head?.ETag === multipartETag(parts) ? { etag: head.ETag, versionId: head.VersionId } : undefined
  }

  /**
   * Aborts the upload, then lists its parts and aborts again while any remain (parts that were
   * in flight may still land after an abort); a failed abort or listing is tried again too. A
   * missing upload (already aborted or completed) is not an error. Throws when the upload is still
   * there after a few rounds (the last error as the cause).
   */
  async abort(): Promise<void> {
    const s3 = loadS3()
    const { client, bucket, key } = this.#target
    let failure: unknown
    for (let round = 1; round <= ABORT_ROUNDS; round++) {
      try {
        await send(client, new s3.AbortMultipartUploadCommand({ ...targetParams(this.#target, false), Bucket: bucket, Key: key, UploadId: this.uploadId }))
        const listed = await this.#listParts()
        if (!listed.Parts?.length) return
        failure = undefined
      } catch (error) {
        if (isGone(error)) return
        failure = error
      }
      await new Promise((resolve) => setTimeout(resolve, 100 * round))
    }
    const why = failure === undefined ? `still holds parts after ${ABORT_ROUNDS} aborts` : `could not be aborted: ${(failure as Error).message}`
    throw new Error(`Multipart upload ${this.uploadId} of ${key} ${why}`, { cause: failure })
  }

  /** How the upload is named in an error's `leftBehind`: `s3://bucket/key (multipart upload <id>)`. */
  get description(): string {
    return `s3://${this.#target.bucket}/${this.#target.key} (multipart upload ${this.uploadId})`
  }

  #listParts(MaxParts?: number): Promise<{ Parts?: unknown[] }> {
    const s3 = loadS3()
    const { client, bucket, key } = this.#target
    return send(client, new s3.ListPartsCommand({ ...targetParams(this.#target, false), Bucket: bucket, Key: key, UploadId: this.uploadId, MaxParts }))
  }
}

/**
 * Aborts every open multipart upload of `key` except `keep` (uploads a killed attempt left behind),
 * or only those begun at or after `since` (by the store's clock).
 */
export async function abortOtherUploads({ client, bucket, key }: S3Target, keep?: string, since?: Date): Promise<void> {
  await abortUploadsUnder(
    { client, bucket },
    key,
    (upload) => upload.Key === key && upload.UploadId !== keep && (since === undefined || (upload.Initiated !== undefined && upload.Initiated >= since)),
  )
}

/** Aborts the open multipart uploads under `prefix` that `match` picks (a partitioned run's, say). */
export async function abortUploadsUnder(
  { client, bucket }: Pick<S3Target, 'client' | 'bucket'>,
  prefix: string,
  match: (upload: { Key: string; UploadId: string; Initiated?: Date }) => boolean,
): Promise<void> {
  const s3 = loadS3()
  let KeyMarker: string | undefined
  let UploadIdMarker: string | undefined
  do {
    const page = await send<{
      Uploads?: Array<{ Key?: string; UploadId?: string; Initiated?: Date }>
      IsTruncated?: boolean
      NextKeyMarker?: string
      NextUploadIdMarker?: string
    }>(client, new s3.ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker, UploadIdMarker }))
    for (const { Key, UploadId, Initiated } of page.Uploads ?? []) {
      if (!Key || !UploadId || !match({ Key, UploadId, Initiated })) continue
      await new MultipartUpload({ client, bucket, key: Key }, UploadId).abort()
    }
    KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined
    UploadIdMarker = page.NextUploadIdMarker
  } while (KeyMarker !== undefined)
}

export type { S3ClientLike }
