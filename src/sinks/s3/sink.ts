import { Writable } from 'node:stream'
import { checkChecksumOption, Checksummer, type ChecksumAlgorithm, type ObjectChecksum } from '../../core/checksum.js'
import { ExportError, invalidOption, toExportError } from '../../core/errors.js'
import { checkBoolean, checkFunction, checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import type { CommitHook, ContentInfo, Discardable, PartStore, Sink, SplitSink } from '../../core/types.js'
import {
  checkCondition,
  deleteObject,
  getObject,
  isPreconditionFailed,
  listKeys,
  putObject,
  type ObjectParams,
  type S3ClientLike,
  type S3Location,
  type WriteCondition,
} from './client.js'
import { checkPartSize, MAX_PARTS, MIN_PART_SIZE, MultipartUpload, partSizeFor, type UploadedPart } from './multipart.js'

export type { S3ClientLike, S3Location }

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
  /** e.g. `AES256` or `aws:kms`. */
  serverSideEncryption?: string
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
  Omit<S3SinkOptions, 'partSize' | 'queueSize' | 'memoryBudget' | 'checksum'> & { partSize: number; queueSize: number; checksum: ChecksumAlgorithm | false }
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
})

/** Checks s3Sink options and fills in the defaults; throws ERR_INVALID_OPTION naming the option. */
export function normalizeS3SinkOptions(options: S3SinkOptions): NormalizedS3SinkOptions {
  checkObject('options', options, S3_SINK_OPTION_NAMES)
  const { client, bucket, key } = options
  if (typeof client?.send !== 'function') invalidOption('client', 'an S3Client', client)
  checkString('bucket', bucket)
  checkString('key', key)
  for (const name of ['contentType', 'contentEncoding', 'contentDisposition', 'storageClass', 'serverSideEncryption'] as const) {
    if (options[name] !== undefined) checkString(name, options[name])
  }
  if (options.metadata !== undefined) checkObject('metadata', options.metadata)
  if (options.onUploadCreated !== undefined) checkFunction('onUploadCreated', options.onUploadCreated)
  if (options.overwrite !== undefined) checkBoolean('overwrite', options.overwrite)
  if (options.ifMatch !== undefined) {
    checkString('ifMatch', options.ifMatch)
    if (options.overwrite === false) invalidOption('ifMatch', 'given without overwrite: false (one replaces an object, the other never does)', options.ifMatch)
  }
  const { memoryBudget: _memoryBudget, partSize: _partSize, queueSize: _queueSize, ...rest } = options
  return Object.freeze({ ...rest, ...sizing(options), checksum: checkChecksumOption('checksum', options.checksum) })
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

const stoppedError = () => new ExportError('ERR_ABORTED', 'sink', 'The upload was stopped before it completed')

// A failure of the sink: ERR_PRECONDITION for a conditional write the store refused, ERR_SINK otherwise.
function sinkFailure(error: unknown, condition: WriteCondition): ExportError {
  if (!isPreconditionFailed(error) || Object.keys(condition).length === 0) return toExportError(error, 'ERR_SINK', 'sink')
  const why =
    'IfNoneMatch' in condition ? 'an object was written at the key meanwhile (overwrite: false)' : `the object is no longer ${condition.IfMatch} (ifMatch)`
  return new ExportError('ERR_PRECONDITION', 'sink', `The store refused the commit: ${why}`, { cause: error })
}

/**
 * An S3 sink (see `s3Sink`): a streaming multipart upload, or one PutObject below one part.
 * CompleteMultipartUpload (or the PutObject) is its commit point: a destroy before it aborts the
 * upload; a destroy during it waits for S3's answer.
 */
export class S3Sink extends Writable implements Sink<S3Location>, SplitSink<S3Location>, Discardable, CommitHook {
  readonly #options: NormalizedS3SinkOptions
  readonly #cancel = new AbortController()
  #info: ContentInfo = {}
  #buffered: Buffer[] = []
  #bufferedBytes = 0
  #bufferedSum: Checksummer | undefined // of the buffered bytes
  #checksum: ObjectChecksum | undefined
  #upload: MultipartUpload | undefined
  #creating: Promise<void> | undefined
  #nextPart = 1
  readonly #parts: UploadedPart[] = []
  readonly #inFlight = new Set<Promise<void>>()
  #failure: unknown // the first part (or create) that failed: the upload can no longer complete
  #uploadedBytes = 0
  #location: S3Location | undefined
  #stopped = false // destroyed: nothing may be committed any more
  #committing: Promise<unknown> | undefined
  #checked: Promise<void> | undefined // the condition, checked before the first byte
  #leftBehind: string[] = []
  /** Awaited once every part is acknowledged, before CompleteMultipartUpload or the single PUT (see CommitHook). */
  beforeCommit: (() => Promise<void>) | undefined = undefined

  constructor(options: NormalizedS3SinkOptions) {
    super({ highWaterMark: 64 * 1024 })
    this.#options = options
  }

  /** `{ bucket, key, etag, versionId }` once S3 has completed the object. */
  get location(): S3Location | undefined {
    return this.#location
  }

  /** After a failure: the multipart upload this sink could not abort (`s3://bucket/key (multipart upload <id>)`). */
  get leftBehind(): string[] {
    return this.#leftBehind
  }

  /** The object's full checksum once S3 has completed it (unless the `checksum` option is `false`). */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }

  /** Bytes S3 has acknowledged (completed parts, or the single PUT). */
  get uploadedBytes(): number {
    return this.#uploadedBytes
  }

  setContentInfo(info: ContentInfo): void {
    this.#info = info
  }

  /**
   * The objects of a split export beside this sink's key: each part with this sink's options, the
   * manifest as one PutObject of JSON (with its storage class and encryption).
   */
  partStore(): PartStore<S3Location> {
    const { overwrite, ifMatch } = this.#options
    // (The manifest of a split export is its commit point: a condition on it is not offered yet.)
    if (overwrite === false || ifMatch !== undefined)
      invalidOption(
        overwrite === false ? 'overwrite' : 'ifMatch',
        'unset for a split or partitioned export (one object only, for now)',
        overwrite === false ? overwrite : ifMatch,
      )
    return s3PartStore(this.#options, () => this.#info)
  }

  /** Deletes the object this sink completed (its version, on a versioned bucket). */
  async discard(): Promise<void> {
    const location = this.#location
    if (location === undefined) return
    await deleteObject({ client: this.#options.client, bucket: location.bucket, key: location.key }, location.versionId)
    this.#location = undefined
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#checked === undefined)
      return void this.#check().then(
        () => this._write(chunk, encoding, callback),
        (error: Error) => callback(error),
      )
    if (this.#failure !== undefined) return callback(toExportError(this.#failure, 'ERR_SINK', 'sink'))
    this.#buffered.push(chunk)
    this.#bufferedBytes += chunk.length
    if (this.#options.checksum) (this.#bufferedSum ??= new Checksummer(this.#options.checksum)).update(chunk)
    if (this.#bufferedBytes < partSizeFor(this.#nextPart, this.#options.partSize)) return callback()
    this.#startPart(...this.#takeBuffered()).then(
      () => callback(),
      (error) => callback(toExportError(error, 'ERR_SINK', 'sink')),
    )
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#check()
      .then(() => this.#commit())
      .then(
        () => callback(),
        (error) => callback(sinkFailure(error, this.#condition())),
      )
  }

  #condition(): WriteCondition {
    const { overwrite, ifMatch } = this.#options
    if (overwrite === false) return { IfNoneMatch: '*' }
    return ifMatch === undefined ? {} : { IfMatch: ifMatch.startsWith('"') ? ifMatch : `"${ifMatch}"` }
  }

  // The condition, checked once before the first byte: an export it refuses sends nothing.
  #check(): Promise<void> {
    return (this.#checked ??= checkCondition(this.#options, this.#condition()).then(
      (refusal) => {
        if (refusal) throw new ExportError('ERR_PRECONDITION', 'sink', `Refused before the commit: ${refusal}`)
      },
      (error: unknown) => {
        throw toExportError(error, 'ERR_SINK', 'sink')
      },
    ))
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopped = true
    this.#cleanUp(error).then(
      () => callback(error),
      (abortError) => callback(error ?? toExportError(abortError, 'ERR_SINK', 'sink')),
    )
  }

  #objectParams(): ObjectParams {
    const { contentType, contentEncoding, contentDisposition, metadata, storageClass, serverSideEncryption } = this.#options
    return {
      ContentType: contentType ?? this.#info.contentType,
      ContentEncoding: contentEncoding ?? this.#info.contentEncoding,
      ContentDisposition: contentDisposition,
      Metadata: metadata,
      StorageClass: storageClass,
      ServerSideEncryption: serverSideEncryption,
    }
  }

  // The buffered bytes, and their checksum (the next part's, or the single PUT's).
  #takeBuffered(): [Buffer, Promise<ObjectChecksum> | undefined] {
    const body = Buffer.concat(this.#buffered, this.#bufferedBytes)
    const sum = this.#options.checksum ? (this.#bufferedSum ?? new Checksummer(this.#options.checksum)).digest() : undefined
    this.#buffered = []
    this.#bufferedBytes = 0
    this.#bufferedSum = undefined
    return [body, sum]
  }

  // Not cancellable on purpose: once S3 has created the upload we must learn its id to abort it.
  #createUpload(): Promise<void> {
    const checksum = this.#options.checksum || undefined
    return (this.#creating ??= MultipartUpload.create(this.#options, this.#objectParams(), checksum).then(async (upload) => {
      this.#upload = upload
      await this.#options.onUploadCreated?.(upload.uploadId)
    }))
  }

  async #uploadPart(body: Buffer, sum: Promise<ObjectChecksum> | undefined): Promise<void> {
    const partNumber = this.#nextPart++
    if (partNumber > MAX_PARTS) throw new ExportError('ERR_SINK', 'sink', `The upload reached S3's limit of ${MAX_PARTS} parts`)
    await this.#createUpload()
    this.#parts.push(await this.#upload!.uploadPart(partNumber, body, this.#cancel.signal, await sum))
    this.#uploadedBytes += body.length
  }

  // Starts a part upload once fewer than queueSize are in flight (the write's backpressure): at
  // most queueSize parts upload while one more fills or waits, partSize x (queueSize + 1) in all.
  // A part that fails fails the upload: it is remembered and thrown by the next write or by final.
  async #startPart(body: Buffer, sum: Promise<ObjectChecksum> | undefined): Promise<void> {
    while (this.#inFlight.size >= this.#options.queueSize && this.#failure === undefined) await Promise.race(this.#inFlight)
    if (this.#failure !== undefined) throw toExportError(this.#failure, 'ERR_SINK', 'sink')
    const tracked: Promise<void> = this.#uploadPart(body, sum).then(
      () => void this.#inFlight.delete(tracked),
      (error) => {
        this.#failure ??= error
        this.#inFlight.delete(tracked)
      },
    )
    this.#inFlight.add(tracked)
  }

  async #commit(): Promise<void> {
    const { bucket, key } = this.#options
    if (this.#creating === undefined) {
      // Smaller than one part (or empty), and no multipart upload was ever attempted: a single PUT.
      const [body, sum] = this.#takeBuffered()
      const checksum = await sum
      await this.beforeCommit?.()
      if (this.#stopped) throw stoppedError()
      // The commit point of a small export: not cancellable, so that its outcome is known.
      this.#committing = putObject(this.#options, body, this.#objectParams(), checksum, this.#condition()).then(({ checksum, ...location }) => {
        this.#uploadedBytes = body.length
        this.#checksum = checksum
        this.#location = location
      })
      return this.#committing as Promise<void>
    }
    if (this.#bufferedBytes > 0) await this.#startPart(...this.#takeBuffered())
    await Promise.all(this.#inFlight)
    if (this.#failure !== undefined) throw toExportError(this.#failure, 'ERR_SINK', 'sink')
    await this.#creating
    await this.beforeCommit?.()
    // Checked again just before the completion: some stores (Ceph RGW 16) ignore its condition.
    this.#checked = undefined
    await this.#check()
    if (this.#stopped) throw stoppedError()
    const parts = this.#parts.sort((a, b) => a.PartNumber - b.PartNumber)
    // The commit point: not cancellable, so that its outcome is known. Once sent, a destroy waits for it.
    this.#committing = this.#upload!.complete(parts, this.#condition()).then(({ etag, versionId, checksum }) => {
      this.#checksum = checksum
      this.#location = { bucket, key, etag, versionId }
    })
    await this.#committing
  }

  async #cleanUp(error: Error | null): Promise<void> {
    // A completion already sent decides: if S3 completed the upload, the export has landed.
    await this.#committing?.catch(() => {})
    if (this.#location !== undefined) return
    this.#cancel.abort(error ?? new Error('destroyed'))
    await Promise.allSettled(this.#inFlight)
    await this.#creating?.catch(() => {})
    const upload = this.#upload
    await upload?.abort().catch((error: unknown) => {
      this.#leftBehind = [upload.description]
      throw error
    })
  }
}

/**
 * S3 sink: a streaming multipart upload (one PutObject when the export is smaller than a part).
 * Memory is bounded by partSize x (queueSize + 1). On any error or abort it cancels in-flight
 * part requests, waits for them to settle and aborts the multipart upload: no object appears and
 * no parts are left behind.
 */
export function s3Sink(options: S3SinkOptions): S3Sink {
  return new S3Sink(normalizeS3SinkOptions(options))
}

/**
 * The objects of an export in parts beside `options.key` (see S3Sink.partStore): each part an
 * S3Sink with these options, the manifest one PutObject of JSON with its storage class and encryption.
 */
export function s3PartStore(options: NormalizedS3SinkOptions, info: () => ContentInfo = () => ({})): PartStore<S3Location> {
  const { client, bucket, serverSideEncryption, checksum } = options
  return {
    name: options.key,
    sink: (key) => {
      const sink = new S3Sink({ ...options, key, onUploadCreated: undefined })
      sink.setContentInfo(info())
      return sink
    },
    read: (key) => getObject({ client, bucket, key }),
    // Not in the sink's storage class: the manifest is read before every later export (an archive class would refuse it).
    write: (key, body) =>
      putObject({ client, bucket, key }, body, { ContentType: 'application/json', ServerSideEncryption: serverSideEncryption }, checksum || undefined).then(
        ({ checksum: _checksum, ...location }) => location,
      ),
    remove: (key) => deleteObject({ client, bucket, key }),
    locationOf: (key) => ({ bucket, key }),
    list: (prefix) => listKeys(client, bucket, prefix),
  }
}
