import { Writable } from 'node:stream'
import { Checksummer, type ChecksumAlgorithm, type ObjectChecksum } from '../../core/checksum.js'
import { ExportError, invalidOption, toExportError } from '../../core/errors.js'
import type { CommitHook, ContentInfo, Discardable, PartStore, Sink, SplitSink, StageTelemetry, TelemetryAttributes } from '../../core/types.js'
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
import { MAX_PARTS, MultipartUpload, partSizeFor, type UploadedPart } from './multipart.js'
import { ensureObjectSettings } from './settings.js'
import { normalizeS3SinkOptions, tagging, type NormalizedS3SinkOptions, type S3SinkOptions } from './options.js'

export { normalizeS3SinkOptions, type NormalizedS3SinkOptions, type S3ClientLike, type S3Location, type S3SinkOptions }

/** Server-side encryption by S3 (SSE-S3, SSE-KMS with its key); SSE-C goes with every request (targetParams). */
const encryptionParams = ({ serverSideEncryption, sseKmsKeyId, bucketKeyEnabled }: NormalizedS3SinkOptions): ObjectParams => ({
  ServerSideEncryption: serverSideEncryption ?? (sseKmsKeyId === undefined ? undefined : 'aws:kms'),
  SSEKMSKeyId: sseKmsKeyId,
  BucketKeyEnabled: bucketKeyEnabled,
})

const stoppedError = () => new ExportError('ERR_ABORTED', 'sink', 'The upload was stopped before it completed')

// The error and the errors it wraps (`cause`), outermost first.
function* causes(error: unknown): Generator<Error & { $metadata?: { httpStatusCode?: number } }> {
  for (let e = error; e instanceof Error; e = e.cause) yield e
}

// A failure of the sink: ERR_PRECONDITION for a conditional write the store refused, ERR_SINK otherwise.
export function sinkFailure(error: unknown, condition: WriteCondition, checksum: ChecksumAlgorithm | false): ExportError {
  if (error instanceof ExportError) return error
  const conditional = Object.keys(condition).length > 0
  const status = (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode
  // A store that does not implement a header we sent refuses it (501): said which, never written without it.
  const asked = [conditional && 'conditional writes (overwrite: false, ifMatch)', checksum && `${checksum} checksums (checksum: false leaves them out)`]
  if (status === 501 && (conditional || checksum))
    return new ExportError(
      'ERR_SINK',
      'sink',
      `The store does not implement a header this write sent (HTTP 501); it may not support ${asked.filter(Boolean).join(' or ')}: ${(error as Error).message}`,
      { cause: error },
    )
  if (!conditional) return toExportError(error, 'ERR_SINK', 'sink')
  const all = [...causes(error)]
  let why: string | undefined
  // A write that raced another at the same key (S3: 409 ConditionalRequestConflict, "retry the upload").
  if (all.some((e) => e.name === 'ConditionalRequestConflict' || e.$metadata?.httpStatusCode === 409))
    why = 'another write to the key conflicted with this one (HTTP 409); it may be retried'
  else if (all.some(isPreconditionFailed))
    why =
      'IfNoneMatch' in condition ? 'an object was written at the key meanwhile (overwrite: false)' : `the object is no longer ${condition.IfMatch} (ifMatch)`
  // If-Match on a key with no object: S3 answers 404 NoSuchKey (NoSuchUpload is the upload's own 404).
  else if ('IfMatch' in condition && all.some((e) => e.name === 'NoSuchKey')) why = `the object is gone, not ${condition.IfMatch} (ifMatch)`
  if (why === undefined) return toExportError(error, 'ERR_SINK', 'sink')
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
  #telemetry: StageTelemetry | undefined
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

  setTelemetry(telemetry: StageTelemetry): void {
    this.#telemetry = telemetry
  }

  // A piece of work as a span under the export's, when there is telemetry.
  #record<T>(name: string, attributes: TelemetryAttributes, work: () => Promise<T>): Promise<T> {
    return this.#telemetry ? this.#telemetry.span(name, attributes, work) : work()
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
    await deleteObject({ ...this.#options, bucket: location.bucket, key: location.key }, location.versionId)
    this.#location = undefined
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#checked === undefined)
      return void this.#check().then(
        // Destroyed while the condition was checked: no upload may start any more.
        () => (this.#stopped ? callback(stoppedError()) : this._write(chunk, encoding, callback)),
        (error: Error) => callback(error),
      )
    if (this.#failure !== undefined) return callback(this.#failed(this.#failure))
    this.#buffered.push(chunk)
    this.#bufferedBytes += chunk.length
    if (this.#options.checksum) (this.#bufferedSum ??= new Checksummer(this.#options.checksum)).update(chunk)
    if (this.#bufferedBytes < partSizeFor(this.#nextPart, this.#options.partSize)) return callback()
    this.#startPart(...this.#takeBuffered()).then(
      () => callback(),
      (error) => callback(this.#failed(error)),
    )
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#check()
      .then(() => this.#commit())
      .then(
        () => callback(),
        (error) => callback(this.#failed(error)),
      )
  }

  #failed(error: unknown): ExportError {
    return sinkFailure(error, this.#condition(), this.#options.checksum)
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

  // Checked again just before the commit: some stores (Ceph RGW 16) ignore a completion's condition.
  #checkAgain(): Promise<void> {
    if (Object.keys(this.#condition()).length === 0) return Promise.resolve()
    this.#checked = undefined
    return this.#check()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopped = true
    this.#cleanUp(error).then(
      () => callback(error),
      (abortError) => callback(error ?? toExportError(abortError, 'ERR_SINK', 'sink')),
    )
  }

  #objectParams(): ObjectParams {
    const { contentType, contentEncoding, contentDisposition, metadata, storageClass, tags, objectLock } = this.#options
    return {
      ContentType: contentType ?? this.#info.contentType,
      ContentEncoding: contentEncoding ?? this.#info.contentEncoding,
      ContentDisposition: contentDisposition,
      Metadata: metadata,
      StorageClass: storageClass,
      ...encryptionParams(this.#options),
      Tagging: tags && tagging(tags),
      ObjectLockMode: objectLock?.mode,
      ObjectLockRetainUntilDate: objectLock?.retainUntil,
      ObjectLockLegalHoldStatus: objectLock?.legalHold === undefined ? undefined : objectLock.legalHold ? 'ON' : 'OFF',
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
    const checksum = await sum
    const attributes = { 'stream_export.key': this.#options.key, 'stream_export.part': partNumber, 'stream_export.part_bytes': body.length }
    this.#parts.push(
      await this.#record('stream-export upload part', attributes, () => this.#upload!.uploadPart(partNumber, body, this.#cancel.signal, checksum)),
    )
    this.#uploadedBytes += body.length
    this.#telemetry?.event('part', attributes)
  }

  // Starts a part upload once fewer than queueSize are in flight (the write's backpressure): at
  // most queueSize parts upload while one more fills or waits, partSize x (queueSize + 1) in all.
  // A part that fails fails the upload: it is remembered and thrown by the next write or by final.
  async #startPart(body: Buffer, sum: Promise<ObjectChecksum> | undefined): Promise<void> {
    while (this.#inFlight.size >= this.#options.queueSize && this.#failure === undefined) await Promise.race(this.#inFlight)
    if (this.#failure !== undefined) throw this.#failed(this.#failure)
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
      await this.#checkAgain()
      if (this.#stopped) throw stoppedError()
      // The commit point of a small export: not cancellable, so that its outcome is known.
      const put = () => putObject(this.#options, body, this.#objectParams(), checksum, this.#condition())
      this.#committing = this.#record('stream-export commit', { 'stream_export.key': key, 'stream_export.bytes': body.length }, put).then(
        ({ checksum, ...location }) => {
          this.#uploadedBytes = body.length
          this.#checksum = checksum
          this.#location = location
        },
      )
      return this.#committing as Promise<void>
    }
    if (this.#bufferedBytes > 0) await this.#startPart(...this.#takeBuffered())
    await Promise.all(this.#inFlight)
    if (this.#failure !== undefined) throw this.#failed(this.#failure)
    await this.#creating
    await this.beforeCommit?.()
    await this.#checkAgain()
    if (this.#stopped) throw stoppedError()
    const parts = this.#parts.sort((a, b) => a.PartNumber - b.PartNumber)
    // The commit point: not cancellable, so that its outcome is known. Once sent, a destroy waits for it.
    const complete = () => this.#upload!.complete(parts, this.#condition())
    const attributes = { 'stream_export.key': key, 'stream_export.parts': parts.length, 'stream_export.bytes': this.#uploadedBytes }
    this.#committing = this.#record('stream-export commit', attributes, complete).then(async ({ etag, versionId, checksum }) => {
      await ensureObjectSettings(this.#options, versionId, this.#options).catch((error: unknown) => {
        const what = `s3://${bucket}/${key}${versionId ? ` (version ${versionId})` : ''}`
        throw new ExportError('ERR_SINK', 'sink', `The object ${what} landed without the tags or Object Lock asked for, and setting them failed`, {
          cause: error,
        })
      })
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
  const { client, bucket, checksum } = options
  return {
    name: options.key,
    sink: (key) => {
      const sink = new S3Sink({ ...options, key, onUploadCreated: undefined })
      sink.setContentInfo(info())
      return sink
    },
    read: (key) => getObject({ ...options, key }),
    // Not in the sink's storage class: the manifest is read before every later export (an archive class would refuse it).
    write: (key, body) =>
      putObject(
        { ...options, key },
        body,
        { ContentType: 'application/json', ...encryptionParams(options), Tagging: options.tags && tagging(options.tags) },
        checksum || undefined,
      ).then(({ checksum: _checksum, ...location }) => location),
    remove: (key) => deleteObject({ ...options, key }),
    locationOf: (key) => ({ bucket, key }),
    list: (prefix) => listKeys(client, bucket, prefix),
  }
}
