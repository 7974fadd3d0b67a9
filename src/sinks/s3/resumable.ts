import { Writable } from 'node:stream'
import type { ChecksumAlgorithm, ObjectChecksum } from '../../core/checksum.js'
import { ExportError, toExportError } from '../../core/errors.js'
import type { Discardable, PartInfo, SegmentSink, Sink } from '../../core/types.js'
import { putObject, type S3ClientLike, type S3Location, type S3Target } from './client.js'
import { abortOtherUploads, MIN_PART_SIZE, MultipartUpload, wholeChecksum, type UploadedPart } from './multipart.js'
import { checkGcsOptions, isGcsClient } from './gcs.js'
import { tagging } from './options.js'
import { ensureObjectSettings } from './settings.js'

/** What a resumable upload saves after each completed part: enough to continue after a crash. */
export interface ExportCheckpoint {
  uploadId: string
  /** Where the upload goes: what a clean-up after a final failure needs. */
  bucket?: string
  key?: string
  /**
   * Completed parts, in order. A shard's first and last pieces are `stash` objects instead (parts
   * of S3 but the last must hold 5 MiB: the flow's parent joins them to their neighbours).
   */
  parts: Array<UploadedPart & { stash?: string }>
  /** Source key of the last row inside the completed parts (undefined: none yet). */
  lastKey?: unknown
  /** Rows written inside the completed parts. */
  rows: number
  /** Bytes uploaded in the completed parts. */
  bytes: number
  /** Every part is uploaded, the end of the format too: what remains is CompleteMultipartUpload. */
  ended?: boolean
  /** The upload's full-object checksum algorithm: each part's checksum is kept, the object's is combined from them. */
  checksum?: ChecksumAlgorithm
}

export interface ResumableUploadOptions {
  client: S3ClientLike
  bucket: string
  key: string
  /** Content-Type of the object (application/gzip for a gzipped export). */
  contentType?: string
  /** The size of part `n` (S3's parts may grow to fit 10,000 of them). */
  partSize: (partNumber: number) => number
  /** Where an earlier attempt stopped. */
  checkpoint?: ExportCheckpoint
  /** Persist the checkpoint (e.g. job.updateData); awaited after every completed part. */
  onCheckpoint(checkpoint: ExportCheckpoint): Promise<unknown>
  /** The object's full checksum (see s3Sink's `checksum`): default CRC64NVME; a checkpoint keeps its own. */
  checksum?: ChecksumAlgorithm | false
  /** The object's tags (set when its upload is created). */
  tags?: Record<string, string>
}

/** An S3 writer's failure as ERR_SINK. */
export const sinkError = (error: unknown) => toExportError(error, 'ERR_SINK', 'sink')
const noSuchUpload = () => Object.assign(new Error('The specified upload does not exist.'), { name: 'NoSuchUpload' })

/**
 * One multipart upload written as the parts of a split export whose parts are segments of one
 * object (exportStream cuts them at row boundaries, a gzip member each, the format's header only
 * in the first and its end only in the last), checkpointed after every part so that a crashed
 * attempt's successor continues with the next part and the next key instead of starting over.
 * `open()` first: it creates the upload, or finds the one a checkpoint names.
 */
export class ResumableUpload extends Writable implements SegmentSink<S3Location> {
  readonly #options: ResumableUploadOptions
  #upload: MultipartUpload | undefined
  #done: ExportCheckpoint | undefined
  #firstPart = 1
  #location: S3Location | undefined
  #checksum: ObjectChecksum | undefined
  #pausing = false

  /** A template, as the sink of a split export is: the parts are written, never this stream. */
  constructor(options: ResumableUploadOptions) {
    super()
    this.#options = options
  }

  /** The object's full checksum once completed: of every part, those of earlier attempts too. */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }

  /** The checkpoint as it stands (parts completed by this attempt and those before it). */
  get checkpoint(): ExportCheckpoint | undefined {
    return this.#done
  }

  /**
   * Creates the upload (and saves its id before any part), or checks that the checkpoint's still
   * exists. Resolves with the object's location when an earlier attempt completed it already (it
   * died before saying so): there is nothing left to export then.
   */
  async open(): Promise<S3Location | undefined> {
    const { client, bucket, key, checkpoint, contentType } = this.#options
    const target: S3Target = { client, bucket, key }
    try {
      // An attempt killed between CreateMultipartUpload and saving its id left an upload nobody
      // knows: every attempt aborts the key's uploads but the one it continues.
      await abortOtherUploads(target, checkpoint?.uploadId)
      if (checkpoint) {
        this.#done = { ...checkpoint, bucket, key, parts: [...checkpoint.parts] }
        this.#firstPart = checkpoint.parts.length + 1
        this.#upload = new MultipartUpload(target, checkpoint.uploadId, checkpoint.checksum)
        if (!(await this.#upload.exists())) return (this.#location = await this.#completedEarlier())
        // The previous attempt uploaded everything and died before (or while) completing.
        if (checkpoint.ended) return (this.#location = await this.#complete())
        return undefined
      }
      const { tags } = this.#options
      if (isGcsClient(client)) checkGcsOptions({ checksum: this.#options.checksum, tags })
      const algorithm = this.#options.checksum === undefined ? (isGcsClient(client) ? undefined : 'CRC64NVME') : this.#options.checksum || undefined
      this.#upload = await MultipartUpload.create(target, { ContentType: contentType, ...(tags && { Tagging: tagging(tags) }) }, algorithm)
    } catch (error) {
      throw sinkError(error)
    }
    const { uploadId, checksum } = this.#upload
    this.#done = { uploadId, bucket, key, parts: [], rows: 0, bytes: 0, ...(checksum && { checksum }) }
    // Saved before any part, so that an attempt dying now can still abort the upload.
    await this.#options.onCheckpoint(this.#done)
    return undefined
  }

  /** Rows the attempts before this one exported: the format continues its row count from there. */
  get startRow(): number {
    return this.#options.checkpoint?.rows ?? 0
  }

  /** The size at which exportStream cuts part `n` of this attempt (S3's minimum once pausing). */
  partBytes(n: number): number {
    const size = this.#options.partSize(this.#firstPart + n - 1)
    return this.#pausing ? Math.min(size, MIN_PART_SIZE) : size
  }

  /**
   * Ends this attempt early, at the next row once the part being written holds S3's minimum part
   * size (5 MiB): the export then resolves with `paused: true` and the checkpoint holds every row
   * written; another attempt continues from it (the Lambda handler, before its deadline).
   */
  pause(): void {
    this.#pausing = true
  }

  /** Whether `pause()` was called: the export ends at the next cut. */
  get pausing(): boolean {
    return this.#pausing
  }

  /** Part `n` of this attempt: its bytes are gathered, then sent as one UploadPart. */
  partSink(n: number): PartUpload {
    if (!this.#upload) throw new ExportError('ERR_SINK', 'sink', 'ResumableUpload.open() must run before the export')
    return new PartUpload(this.#upload, this.#firstPart + n - 1)
  }

  /**
   * After each part, in order: the part joins the checkpoint, which is saved. With the last part
   * (the output's end) the checkpoint says `ended` in the same save: an attempt after a crash then
   * only completes the upload, and never writes the end a second time.
   */
  async partDone(part: PartInfo<S3Location>, last: boolean): Promise<void> {
    const done = this.#done!
    const { checksum } = part
    await this.#options.onCheckpoint(
      recordPart(done, { PartNumber: done.parts.length + 1, ETag: part.location.etag!, ...(checksum && { checksum }) }, part, last),
    )
  }

  /** The commit point: every part is in (the checkpoint says `ended`); S3 assembles the object. */
  async commit(): Promise<S3Location> {
    return (this.#location = await this.#complete())
  }

  get location(): S3Location | undefined {
    return this.#location
  }

  async #complete(): Promise<S3Location> {
    const { bucket, key } = this.#options
    const done = this.#done!
    const result = await this.#upload!.complete(done.parts).catch((error: Error) => {
      // The upload is gone and the object is not the one these parts make.
      if (error.name === 'NoSuchUpload') return undefined
      throw new ExportError('ERR_SINK', 'sink', `Completing the upload failed: ${error.message}`, { cause: error })
    })
    if (result === undefined) return this.#completedEarlier()
    // (Some stores drop tags from CreateMultipartUpload: see settings.ts.)
    await ensureObjectSettings(this.#options, result.versionId, this.#options).catch((error: unknown) => {
      throw new ExportError('ERR_SINK', 'sink', `The object s3://${bucket}/${key} landed without the tags asked for, and setting them failed`, { cause: error })
    })
    this.#checksum = result.checksum
    return { bucket, key, etag: result.etag, versionId: result.versionId }
  }

  /**
   * The upload of the checkpoint is gone. If the object at the key is the one its parts make (S3's
   * multipart ETag), an earlier attempt completed it: that is this export's result. Otherwise the
   * upload was aborted (a lifecycle rule, an operator): ERR_SINK.
   */
  async #completedEarlier(): Promise<S3Location> {
    const { bucket, key } = this.#options
    const done = this.#done!
    const landed = done.ended ? await this.#upload!.completedWith(done.parts) : undefined
    if (landed) {
      // Combined from the parts' (S3 verified each); the store's answer to the completion was lost.
      const whole = wholeChecksum(done.parts, done.checksum)
      if (whole) this.#checksum = { ...whole, verifiedByStore: false }
      return { bucket, key, etag: landed.etag, versionId: landed.versionId }
    }
    throw new ExportError('ERR_SINK', 'sink', `The multipart upload ${done.uploadId} of ${key} no longer exists and was not completed by this export`, {
      cause: noSuchUpload(),
    })
  }
}

/**
 * One part of a resumable upload: its bytes are gathered, then sent as one UploadPart on finish, or
 * as an object of their own when `stashKey()` names one then (a shard's first or last piece).
 */
export class PartUpload extends Writable implements Sink<S3Location>, Discardable {
  readonly #upload: MultipartUpload
  readonly #partNumber: number
  readonly #stashKey: () => string | undefined
  readonly #chunks: Buffer[] = []
  #location: S3Location | undefined
  #checksum: ObjectChecksum | undefined

  constructor(upload: MultipartUpload, partNumber: number, stashKey = (): string | undefined => undefined) {
    super()
    this.#upload = upload
    this.#partNumber = partNumber
    this.#stashKey = stashKey
  }

  /** The part's `{ bucket, key, etag }` once S3 has it. */
  get location(): S3Location | undefined {
    return this.#location
  }

  /** The part's checksum once S3 has it (an upload with a checksum algorithm). */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }

  /** A failed attempt keeps its parts: the next attempt continues the upload. */
  discard(): Promise<void> {
    return Promise.resolve()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#chunks.push(chunk)
    callback()
  }

  override _final(callback: (error?: Error | null) => void): void {
    const body = Buffer.concat(this.#chunks)
    const stash = this.#stashKey()
    const { target } = this.#upload
    const landed = stash
      ? putObject({ ...target, key: stash }, body)
      : this.#upload.uploadPart(this.#partNumber, body).then(({ ETag, checksum }) => {
          this.#checksum = checksum
          return { bucket: target.bucket, key: target.key, etag: ETag }
        })
    landed.then(
      (location) => {
        this.#location = location
        callback()
      },
      (error) => callback(sinkError(error)),
    )
  }
}

/**
 * Adds a landed part to a checkpoint (its rows, bytes and last key; `ended` with the output's last
 * part) and returns a copy to save.
 */
export function recordPart(done: ExportCheckpoint, entry: ExportCheckpoint['parts'][number], part: PartInfo<S3Location>, last: boolean): ExportCheckpoint {
  done.parts.push(entry)
  done.rows += part.rows
  done.bytes += part.bytes
  if ('lastKey' in part) done.lastKey = part.lastKey
  if (last) done.ended = true
  return { ...done, parts: [...done.parts] }
}
