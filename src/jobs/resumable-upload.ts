import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createGzip, type Gzip } from 'node:zlib'
import { ExportError, toExportError } from '../errors.js'
import type { S3Location } from '../sinks/s3.js'
import { abortOtherUploads, loadS3, send, type S3ClientLike } from '../sinks/s3-multipart.js'
import { GZIP_CONTENT_TYPE } from '../stages/gzip.js'
import { applyTransforms, type RowTransform } from '../stages/map-rows.js'
import type { RowEncoder } from '../types.js'

/** What a resumable export saves after each completed part: enough to continue after a crash. */
export interface ExportCheckpoint {
  uploadId: string
  /** Where the upload goes: what a clean-up after a final failure needs. */
  bucket?: string
  key?: string
  /**
   * A random id stored in the object's metadata (`x-amz-meta-stream-export-upload`): an attempt
   * that finds the upload gone recognises the object its predecessor completed.
   */
  token?: string
  /** Completed parts, in order. */
  parts: Array<{ PartNumber: number; ETag: string }>
  /** Source key of the last row inside the completed parts (undefined: none yet). */
  lastKey?: unknown
  /** Rows written inside the completed parts. */
  rows: number
  /** Bytes uploaded in the completed parts. */
  bytes: number
  /** Every part is uploaded, the end of the format too: what remains is CompleteMultipartUpload. */
  ended?: boolean
}

/** The object metadata key holding the checkpoint's token. */
export const UPLOAD_TOKEN_METADATA = 'stream-export-upload'

export interface ResumableExportOptions {
  client: S3ClientLike
  bucket: string
  key: string
  contentType: string
  /** Rows, each with a key (`keyOf`), in key order: a keyset source started after `checkpoint.lastKey`. */
  source: AsyncIterable<unknown>
  keyOf(row: unknown): unknown
  transforms: RowTransform[]
  encoder: RowEncoder
  gzip: boolean
  partSize: number
  /** Where an earlier attempt stopped. */
  checkpoint?: ExportCheckpoint
  /** Persist the checkpoint (e.g. job.updateData); awaited after every completed part. */
  onCheckpoint(checkpoint: ExportCheckpoint): Promise<unknown>
  onProgress?(progress: { rows: number; bytes: number }): void
}

/**
 * A multipart upload whose parts end on row boundaries, each part checkpointed once S3 has it,
 * so that a crashed export continues with the next part and the next key instead of starting
 * over. With gzip every part is its own gzip member: concatenated members are one valid gzip file.
 * One part uploads while the next fills: memory is about 2 x partSize.
 */
export async function resumableExport(options: ResumableExportOptions): Promise<{ rows: number; bytes: number; location: S3Location }> {
  const { client, bucket, key, source, keyOf, transforms, encoder, partSize } = options
  const s3 = loadS3()
  const call = <T>(command: unknown) => send<T>(client, command)
  const sinkError = (error: unknown) => toExportError(error, 'ERR_SINK', 'sink')

  // An attempt killed between CreateMultipartUpload and saving its id left an upload nobody knows:
  // every attempt aborts the key's uploads but the one it continues.
  await abortOtherUploads(client, bucket, key, options.checkpoint?.uploadId).catch((error) => {
    throw sinkError(error)
  })
  let done: ExportCheckpoint
  if (options.checkpoint) {
    done = { ...options.checkpoint, parts: [...options.checkpoint.parts] }
    const exists = await call(new s3.ListPartsCommand({ Bucket: bucket, Key: key, UploadId: done.uploadId, MaxParts: 1 })).then(
      () => true,
      (error: Error) => {
        if (error.name === 'NoSuchUpload') return false
        throw sinkError(error)
      },
    )
    if (!exists) return completedEarlier(options, done)
  } else {
    const token = randomUUID()
    const created = await call<{ UploadId: string }>(
      new s3.CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        ContentType: options.gzip ? GZIP_CONTENT_TYPE : options.contentType,
        Metadata: { [UPLOAD_TOKEN_METADATA]: token },
      }),
    ).catch((error) => {
      throw sinkError(error)
    })
    done = { uploadId: created.UploadId, bucket, key, token, parts: [], rows: 0, bytes: 0 }
    // Saved before any part, so that an attempt dying now can still abort the upload.
    await options.onCheckpoint(done)
  }

  const complete = async () => {
    const result = await call<{ ETag?: string; VersionId?: string }>(
      new s3.CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: done.uploadId, MultipartUpload: { Parts: done.parts } }),
    ).catch((error: Error) => {
      // An earlier attempt's completion may have gone through after all (the answer was lost).
      if (error.name === 'NoSuchUpload') return undefined
      throw new ExportError('ERR_SINK', 'sink', `Completing the upload failed: ${error.message}`, { cause: error })
    })
    if (result === undefined) return completedEarlier(options, done)
    return { rows: done.rows, bytes: done.bytes, location: { bucket, key, etag: result.ETag, versionId: result.VersionId } }
  }
  // The previous attempt uploaded everything and died before (or while) completing.
  if (done.ended) return complete()

  let part = newPart(options.gzip)
  let rows = done.rows // rows encoded so far, the encoder's index
  let lastKey = done.lastKey
  let uploading: Promise<void> = Promise.resolve()

  const cut = async (final: boolean) => {
    const empty = part.textLength() === 0
    const bytes = await part.finish()
    const upTo = { rows, lastKey }
    part = newPart(options.gzip)
    await uploading // one part in flight: checkpoints stay in order
    // Nothing left to add (the rows ended on a part boundary, the format has no closing text):
    // no empty part, which would make the small part before it a non-last part S3 refuses.
    if (final && empty && done.parts.length > 0) {
      done.ended = true
      await options.onCheckpoint({ ...done, parts: [...done.parts] })
      return
    }
    uploading = (async () => {
      const PartNumber = done.parts.length + 1
      const { ETag } = await call<{ ETag: string }>(new s3.UploadPartCommand({ Bucket: bucket, Key: key, UploadId: done.uploadId, PartNumber, Body: bytes }))
      done.parts.push({ PartNumber, ETag })
      done.rows = upTo.rows
      done.lastKey = upTo.lastKey
      done.bytes += bytes.length
      if (final) done.ended = true
      await options.onCheckpoint({ ...done, parts: [...done.parts] })
      options.onProgress?.({ rows: done.rows, bytes: done.bytes })
    })().catch((error) => {
      throw sinkError(error)
    })
    uploading.catch(() => {}) // awaited at the next cut or at the end
  }

  let index = 0 // source rows read in this attempt, as transforms see it
  const encode = (row: unknown) => {
    try {
      return encoder.encode(row as Record<string, unknown>, rows)
    } catch (error) {
      throw toExportError(error, 'ERR_FORMAT', 'format')
    }
  }
  try {
    for await (const raw of source) {
      const row = await applyTransforms(transforms, raw, index)
      index++
      lastKey = keyOf(raw) // the source has moved past this row, written or dropped
      if (row !== undefined) {
        await part.write(encode(row))
        rows++
      }
      if (part.size() >= partSize) await cut(false)
    }
    await part.write(encoder.end(rows))
    await cut(true)
    await uploading
  } catch (error) {
    await uploading.catch(() => {})
    throw toExportError(error, 'ERR_SOURCE', 'source')
  }
  return complete()
}

/**
 * The upload of a checkpoint is gone. If the object at the key carries the checkpoint's token, an
 * earlier attempt completed it (and died before saying so): that is this export's result.
 * Otherwise the upload was aborted (a lifecycle rule, an operator): ERR_SINK.
 */
async function completedEarlier(options: ResumableExportOptions, done: ExportCheckpoint) {
  const { client, bucket, key } = options
  const s3 = loadS3()
  const head = await send<{ Metadata?: Record<string, string>; ETag?: string; VersionId?: string }>(
    client,
    new s3.HeadObjectCommand({ Bucket: bucket, Key: key }),
  ).catch(() => undefined)
  if (done.ended && done.token !== undefined && head?.Metadata?.[UPLOAD_TOKEN_METADATA] === done.token) {
    return { rows: done.rows, bytes: done.bytes, location: { bucket, key, etag: head.ETag, versionId: head.VersionId } }
  }
  throw new ExportError('ERR_SINK', 'sink', `The multipart upload ${done.uploadId} of ${key} no longer exists and was not completed by this export`, {
    cause: Object.assign(new Error('The specified upload does not exist.'), { name: 'NoSuchUpload' }),
  })
}

/** The bytes of one part being filled: plain text, or one gzip member. */
function newPart(gzip: boolean) {
  const chunks: Buffer[] = []
  let size = 0
  if (!gzip) {
    return {
      write: (text: string) => {
        const bytes = Buffer.from(text)
        chunks.push(bytes)
        size += bytes.length
        return Promise.resolve()
      },
      size: () => size,
      textLength: () => size,
      finish: () => Promise.resolve(Buffer.concat(chunks, size)),
    }
  }
  const member: Gzip = createGzip({ level: 6 })
  member.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    size += chunk.length
  })
  // Text is buffered and written in ~64 KiB pieces (zlib is slow on tiny chunks), waiting for
  // zlib when it falls behind.
  let text = ''
  let textLength = 0
  return {
    write: async (more: string) => {
      text += more
      textLength += more.length
      if (text.length < 64 * 1024) return
      const full = member.write(text)
      text = ''
      if (!full) await once(member, 'drain')
    },
    size: () => size,
    textLength: () => textLength,
    finish: async () => {
      const ended = new Promise<void>((resolve, reject) => {
        member.once('end', resolve)
        member.once('error', reject)
      })
      member.end(text)
      await ended
      return Buffer.concat(chunks, size)
    },
  }
}
