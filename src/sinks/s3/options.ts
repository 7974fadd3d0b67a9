// The options of s3Sink: what it writes with (sizes, metadata, encryption, tags, Object Lock,
// checksum, conditions), checked and defaulted apart from any stream.
import { checkChecksumOption, type ChecksumAlgorithm } from '../../core/checksum.js'
import { invalidOption } from '../../core/errors.js'
import { checkBoolean, checkFunction, checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import type { S3ClientLike } from './client.js'
import { checkGcsOptions, isGcsClient } from './gcs.js'
import { checkPartSize, MIN_PART_SIZE } from './multipart.js'

export interface S3SinkOptions {
  client: S3ClientLike
  bucket: string
  key: string
  /**
   * Default: from the format (`text/csv; charset=utf-8`, `application/x-ndjson`, `application/json`),
   * `application/gzip` when the gzip stage is on.
   */
  contentType?: string
  /**
   * Default: none. A gzipped export is stored as a .gz file; `gzip` here instead makes browsers and
   * HTTP clients decompress it on download (then name the download without `.gz`).
   */
  contentEncoding?: string
  /** e.g. `attachment; filename="statements.csv.gz"`. */
  contentDisposition?: string
  metadata?: Record<string, string>
  /** e.g. `STANDARD_IA`. */
  storageClass?: string
  /** e.g. `AES256` or `aws:kms` (implied by `sseKmsKeyId`). */
  serverSideEncryption?: string
  /** SSE-KMS: the KMS key (id, ARN or alias) that encrypts the object. */
  sseKmsKeyId?: string
  /** SSE-KMS: use the bucket's S3 Bucket Key (fewer KMS requests). */
  bucketKeyEnabled?: boolean
  /**
   * SSE-C: your 256-bit key (a 32-byte Buffer, or its base64). S3 keeps no copy: every read must
   * give it (`presignDownload({ sseCustomerKey })` signs it into the link; see docs/integrity.md).
   */
  sseCustomerKey?: Uint8Array | string
  /** Object tags, e.g. `{ retention: '30d' }` (what lifecycle rules and access policies key on). */
  tags?: Record<string, string>
  /** Object Lock (a bucket with Object Lock enabled): the retention mode and date, and/or a legal hold. */
  objectLock?: { mode?: 'GOVERNANCE' | 'COMPLIANCE'; retainUntil?: Date; legalHold?: boolean }
  /** The account id that must own the bucket: every request fails (403) if another does. */
  expectedBucketOwner?: string
  /**
   * Bytes per part, at least 5 MiB (S3's minimum). Default 8 MiB. The size doubles every 1,000
   * parts (up to S3's 5 GiB maximum), so an export of unknown length never reaches the 10,000-part
   * limit: a 5 MiB start reaches ~5 TiB. Memory: partSize x (queueSize + 1), growing with it after
   * the first 1,000 parts (5-8 GiB uploaded).
   */
  partSize?: number
  /** Parts uploaded concurrently. Default 4. */
  queueSize?: number
  /**
   * Called with the UploadId once the multipart upload exists, e.g. to record it where a process
   * that dies (SIGKILL) leaves it, so that the next attempt can abort it.
   */
  onUploadCreated?: (uploadId: string) => unknown
  /**
   * Upper bound for buffered bytes instead of partSize/queueSize: picks queueSize = 4 (fewer if the
   * budget is small) and partSize = budget / (queueSize + 1), at least 5 MiB. Minimum 10 MiB.
   */
  memoryBudget?: number
  /**
   * The object's full checksum, computed as the bytes pass and sent so that S3 verifies it at the
   * commit point (and each part's on arrival): `CRC64NVME` (default), `CRC32C`, `CRC32`, or `false`
   * for a store that refuses checksums. The result's `checksum` holds it. See docs/integrity.md.
   */
  checksum?: ChecksumAlgorithm | false
  /**
   * `false`: never replace an object. An object at the key is refused before any byte is sent
   * (ERR_PRECONDITION), and the commit is conditional (`If-None-Match: *`), so that one written
   * meanwhile is not replaced either, where the store checks the condition (docs/integrity.md). Default `true`.
   */
  overwrite?: boolean
  /** Replace only the object with this ETag (the one you read): checked before the first byte and at the commit (`If-Match`). */
  ifMatch?: string
}

const MiB = 1024 * 1024

/** s3Sink options checked and defaulted, apart from any stream: sizes resolved, strings checked. */
export type NormalizedS3SinkOptions = Readonly<
  Omit<S3SinkOptions, 'partSize' | 'queueSize' | 'memoryBudget' | 'checksum' | 'sseCustomerKey'> & {
    partSize: number
    queueSize: number
    checksum: ChecksumAlgorithm | false
    sseCustomerKey?: Uint8Array
  }
>

const S3_SINK_OPTION_NAMES = optionNames<S3SinkOptions>({
  client: true,
  bucket: true,
  key: true,
  contentType: true,
  contentEncoding: true,
  contentDisposition: true,
  metadata: true,
  storageClass: true,
  serverSideEncryption: true,
  partSize: true,
  queueSize: true,
  onUploadCreated: true,
  memoryBudget: true,
  checksum: true,
  overwrite: true,
  ifMatch: true,
  sseKmsKeyId: true,
  bucketKeyEnabled: true,
  sseCustomerKey: true,
  tags: true,
  objectLock: true,
  expectedBucketOwner: true,
})
const OBJECT_LOCK_NAMES = optionNames<NonNullable<S3SinkOptions['objectLock']>>({ mode: true, retainUntil: true, legalHold: true })

/** Checks s3Sink options and fills in the defaults; throws ERR_INVALID_OPTION naming the option. */
export function normalizeS3SinkOptions(options: S3SinkOptions): NormalizedS3SinkOptions {
  checkObject('options', options, S3_SINK_OPTION_NAMES)
  const { client, bucket, key } = options
  if (typeof client?.send !== 'function') invalidOption('client', 'an S3Client', client)
  checkString('bucket', bucket)
  checkString('key', key)
  for (const name of [
    'contentType',
    'contentEncoding',
    'contentDisposition',
    'storageClass',
    'serverSideEncryption',
    'sseKmsKeyId',
    'expectedBucketOwner',
  ] as const) {
    if (options[name] !== undefined) checkString(name, options[name])
  }
  if (options.metadata !== undefined) checkObject('metadata', options.metadata)
  if (options.onUploadCreated !== undefined) checkFunction('onUploadCreated', options.onUploadCreated)
  if (options.overwrite !== undefined) checkBoolean('overwrite', options.overwrite)
  if (options.ifMatch !== undefined) {
    checkString('ifMatch', options.ifMatch)
    if (options.overwrite === false) invalidOption('ifMatch', 'given without overwrite: false (one replaces an object, the other never does)', options.ifMatch)
  }
  if (options.bucketKeyEnabled !== undefined) checkBoolean('bucketKeyEnabled', options.bucketKeyEnabled)
  if (options.tags !== undefined) {
    checkObject('tags', options.tags)
    for (const [name, value] of Object.entries(options.tags)) checkString(`tags.${name}`, value)
  }
  if (options.objectLock !== undefined) checkObjectLock(options.objectLock)
  const { memoryBudget: _memoryBudget, partSize: _partSize, queueSize: _queueSize, sseCustomerKey, ...rest } = options
  const gcs = isGcsClient(client)
  if (gcs) checkGcsOptions(options as unknown as Record<string, unknown>)
  const checksum = gcs ? false : checkChecksumOption('checksum', options.checksum)
  return Object.freeze({ ...rest, ...sizing(options), checksum, ...(sseCustomerKey !== undefined && { sseCustomerKey: customerKey(sseCustomerKey) }) })
}

/** An SSE-C key: 32 bytes, given as bytes or base64 (ERR_INVALID_OPTION otherwise). */
export function customerKey(key: unknown): Uint8Array {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'base64') : key instanceof Uint8Array ? key : undefined
  // (The key itself is never echoed.)
  if (bytes?.length !== 32) invalidOption('sseCustomerKey', 'a 256-bit key: 32 bytes, or their base64', `${bytes?.length ?? typeof key} bytes`)
  return bytes
}

function checkObjectLock(lock: NonNullable<S3SinkOptions['objectLock']>): void {
  checkObject('objectLock', lock, OBJECT_LOCK_NAMES)
  const { mode, retainUntil, legalHold } = lock
  if (mode !== undefined && mode !== 'GOVERNANCE' && mode !== 'COMPLIANCE') invalidOption('objectLock.mode', "'GOVERNANCE' or 'COMPLIANCE'", mode)
  if ((mode === undefined) !== (retainUntil === undefined)) invalidOption('objectLock', 'a mode and a retainUntil date together', lock)
  if (retainUntil !== undefined && !(retainUntil instanceof Date && Number.isFinite(retainUntil.getTime())))
    invalidOption('objectLock.retainUntil', 'a valid Date', retainUntil)
  if (legalHold !== undefined) checkBoolean('objectLock.legalHold', legalHold)
}

function sizing(options: S3SinkOptions): { partSize: number; queueSize: number } {
  const { memoryBudget } = options
  if (memoryBudget !== undefined) {
    if (options.partSize !== undefined || options.queueSize !== undefined) {
      invalidOption('memoryBudget', 'given without partSize and queueSize', memoryBudget)
    }
    if (!Number.isSafeInteger(memoryBudget) || memoryBudget < 2 * MIN_PART_SIZE)
      invalidOption('memoryBudget', 'an integer of at least 10 MiB (10485760)', memoryBudget)
    const queueSize = Math.max(1, Math.min(4, Math.floor(memoryBudget / MIN_PART_SIZE) - 1))
    return { queueSize, partSize: Math.floor(memoryBudget / (queueSize + 1)) }
  }
  const { partSize = 8 * MiB, queueSize = 4 } = options
  checkPartSize('partSize', partSize)
  checkPositiveInteger('queueSize', queueSize)
  return { partSize, queueSize }
}

/** Tags as S3's `x-amz-tagging` takes them: `a=1&b=two%20words` (URLSearchParams' `+` for a space is kept as a `+` by some stores). */
export const tagging = (tags: Record<string, string>) =>
  Object.entries(tags)
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
    .join('&')
