import { Writable } from 'node:stream'
import { ExportError, invalidOption, toExportError } from '../errors.js'
import { checkFunction, checkObject, checkPositiveInteger, checkString } from '../options.js'
import { abortUpload, loadS3, multipartETag, send, type S3ClientLike } from './s3-multipart.js'
import type { ContentInfo, Sink } from '../types.js'

export type { S3ClientLike }

export interface S3Location {
  bucket: string
  key: string
  etag?: string
  versionId?: string
}

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
}

const MiB = 1024 * 1024
export const MIN_PART_SIZE = 5 * MiB
const MAX_PART_SIZE = 5 * 1024 * MiB
const MAX_PARTS = 10_000
const PARTS_PER_DOUBLING = 1_000

/** Size of part `partNumber` (1-based) for a start size: doubled every 1,000 parts, capped at 5 GiB. */
export function partSizeFor(partNumber: number, partSize: number): number {
  return Math.min(MAX_PART_SIZE, partSize * 2 ** Math.floor((partNumber - 1) / PARTS_PER_DOUBLING))
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
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE) {
    invalidOption('partSize', 'an integer from 5 MiB (5242880) to 5 GiB', partSize)
  }
  checkPositiveInteger('queueSize', queueSize)
  return { partSize, queueSize }
}

/** An S3 sink (see s3Sink). */
export interface S3Sink extends Sink<S3Location> {
  /** Bytes S3 has acknowledged (completed parts, or the single PUT). */
  readonly uploadedBytes: number
}

/**
 * S3 sink: a streaming multipart upload (one PutObject when the export is smaller than a part).
 * Memory is bounded by partSize x (queueSize + 1). On any error or abort it cancels in-flight
 * part requests, waits for them to settle and aborts the multipart upload: no object appears and
 * no parts are left behind.
 */
export function s3Sink(options: S3SinkOptions): S3Sink {
  checkObject('options', options)
  const { client, bucket, key } = options
  if (typeof client?.send !== 'function') invalidOption('client', 'an S3Client', client)
  checkString('bucket', bucket)
  checkString('key', key)
  for (const name of ['contentType', 'contentEncoding', 'contentDisposition', 'storageClass', 'serverSideEncryption'] as const) {
    if (options[name] !== undefined) checkString(name, options[name])
  }
  if (options.metadata !== undefined) checkObject('metadata', options.metadata)
  if (options.onUploadCreated !== undefined) checkFunction('onUploadCreated', options.onUploadCreated)
  const { partSize, queueSize } = sizing(options)
  const s3 = loadS3()

  let info: ContentInfo = {}
  const objectParams = () => ({
    Bucket: bucket,
    Key: key,
    ContentType: options.contentType ?? info.contentType,
    ContentEncoding: options.contentEncoding ?? info.contentEncoding,
    ContentDisposition: options.contentDisposition,
    Metadata: options.metadata,
    StorageClass: options.storageClass as never,
    ServerSideEncryption: options.serverSideEncryption as never,
  })
  const call = <T>(command: unknown, signal?: AbortSignal) => send<T>(client, command, signal)

  const cancel = new AbortController()
  let buffered: Buffer[] = []
  let bufferedBytes = 0
  let uploadId: string | undefined
  let nextPart = 1
  const parts: Array<{ PartNumber: number; ETag: string }> = []
  const inFlight = new Set<Promise<void>>()
  let failure: unknown // the first part (or create) that failed: the upload can no longer complete
  let uploadedBytes = 0
  let location: S3Location | undefined
  let stopped = false // destroyed: nothing may be committed any more
  let committing: Promise<unknown> | undefined

  const takeBuffered = () => {
    const body = Buffer.concat(buffered, bufferedBytes)
    buffered = []
    bufferedBytes = 0
    return body
  }

  let creating: Promise<void> | undefined
  // Not cancellable on purpose: once S3 has created the upload we must learn its id to abort it.
  const createUpload = () =>
    (creating ??= call<{ UploadId: string }>(new s3.CreateMultipartUploadCommand(objectParams())).then(async (r) => {
      uploadId = r.UploadId
      await options.onUploadCreated?.(uploadId)
    }))

  const uploadPart = async (body: Buffer): Promise<void> => {
    const PartNumber = nextPart++
    if (PartNumber > MAX_PARTS) throw new ExportError('ERR_SINK', 'sink', `The upload reached S3's limit of ${MAX_PARTS} parts`)
    await createUpload()
    const { ETag } = await call<{ ETag: string }>(
      new s3.UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber, Body: body }),
      cancel.signal,
    )
    parts.push({ PartNumber, ETag })
    uploadedBytes += body.length
  }

  // Starts a part upload once fewer than queueSize are in flight (the write's backpressure): at
  // most queueSize parts upload while one more fills or waits, partSize x (queueSize + 1) in all.
  // A part that fails fails the upload: it is remembered and thrown by the next write or by final.
  const startPart = async (body: Buffer): Promise<void> => {
    while (inFlight.size >= queueSize && failure === undefined) await Promise.race(inFlight)
    if (failure !== undefined) throw toExportError(failure, 'ERR_SINK', 'sink')
    const tracked = uploadPart(body).then(
      () => void inFlight.delete(tracked),
      (error) => {
        failure ??= error
        inFlight.delete(tracked)
      },
    )
    inFlight.add(tracked)
  }

  const commit = async () => {
    if (creating === undefined) {
      // Smaller than one part (or empty), and no multipart upload was ever attempted: a single PUT.
      const body = takeBuffered()
      if (stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The upload was stopped before it completed')
      // The commit point of a small export: not cancellable, so that its outcome is known.
      committing = call<{ ETag?: string; VersionId?: string }>(new s3.PutObjectCommand({ ...objectParams(), Body: body })).then((result) => {
        uploadedBytes = body.length
        location = { bucket, key, etag: result.ETag, versionId: result.VersionId }
      })
      return committing
    }
    if (bufferedBytes > 0) await startPart(takeBuffered())
    await Promise.all(inFlight)
    if (failure !== undefined) throw toExportError(failure, 'ERR_SINK', 'sink')
    await creating
    if (stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The upload was stopped before it completed')
    parts.sort((a, b) => a.PartNumber - b.PartNumber)
    // The commit point: not cancellable, so that its outcome is known. Once sent, a destroy waits for it.
    committing = call<{ ETag?: string; VersionId?: string }>(
      new s3.CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
    )
      .catch(async (error: Error) => {
        // A completion whose answer was lost, retried by the SDK, finds the upload gone: if the
        // object is the one these parts make, the upload did complete.
        if (error.name !== 'NoSuchUpload') throw error
        const head = await call<{ ETag?: string; VersionId?: string }>(new s3.HeadObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined)
        if (head?.ETag !== multipartETag(parts)) throw error
        return head
      })
      .then((result) => {
        location = { bucket, key, etag: result.ETag, versionId: result.VersionId }
      })
    await committing
  }

  const sink = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      if (failure !== undefined) return callback(toExportError(failure, 'ERR_SINK', 'sink'))
      buffered.push(chunk)
      bufferedBytes += chunk.length
      if (bufferedBytes < partSizeFor(nextPart, partSize)) return callback()
      startPart(takeBuffered()).then(
        () => callback(),
        (error) => callback(toExportError(error, 'ERR_SINK', 'sink')),
      )
    },
    final(callback) {
      commit().then(
        () => callback(),
        (error) => callback(toExportError(error, 'ERR_SINK', 'sink')),
      )
    },
    destroy(error, callback) {
      stopped = true
      const cleanUp = async () => {
        // A completion already sent decides: if S3 completed the upload, the export has landed.
        await committing?.catch(() => {})
        if (location !== undefined) return
        cancel.abort(error ?? new Error('destroyed'))
        await Promise.allSettled(inFlight)
        await creating?.catch(() => {})
        if (uploadId !== undefined) await abortUpload(client, bucket, key, uploadId)
      }
      cleanUp().then(
        () => callback(error),
        (abortError) => callback(error ?? toExportError(abortError, 'ERR_SINK', 'sink')),
      )
    },
  }) as S3Sink

  Object.defineProperties(sink, {
    location: { get: () => location, enumerable: true },
    uploadedBytes: { get: () => uploadedBytes, enumerable: true },
    setContentInfo: { value: (next: ContentInfo) => void (info = next) },
  })
  return sink
}
