import { once } from 'node:events'
import { createGzip, type Gzip } from 'node:zlib'
import { ExportError, toExportError } from '../errors.js'
import type { RowEncoder } from '../formats/formatter.js'
import { loadOptional } from '../optional.js'
import type { S3Location } from '../sinks/s3.js'
import type { S3ClientLike } from '../sinks/s3-multipart.js'
import { GZIP_CONTENT_TYPE } from '../stages/gzip.js'
import { applyTransforms, type RowTransform } from '../stages/map-rows.js'

/** What a resumable export saves after each completed part: enough to continue after a crash. */
export interface ExportCheckpoint {
  uploadId: string
  /** Completed parts, in order. */
  parts: Array<{ PartNumber: number; ETag: string }>
  /** Source key of the last row inside the completed parts (undefined: none yet). */
  lastKey?: unknown
  /** Rows written inside the completed parts. */
  rows: number
  /** Bytes uploaded in the completed parts. */
  bytes: number
}

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
  const s3 = loadOptional<typeof import('@aws-sdk/client-s3')>('@aws-sdk/client-s3', '@aws-sdk/client-s3')
  const send = <T>(command: unknown) => client.send(command as never) as Promise<T>

  const done: ExportCheckpoint = options.checkpoint
    ? { ...options.checkpoint, parts: [...options.checkpoint.parts] }
    : {
        uploadId: (await send<{ UploadId: string }>(new s3.CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: options.gzip ? GZIP_CONTENT_TYPE : options.contentType,
        }))).UploadId,
        parts: [],
        rows: 0,
        bytes: 0,
      }
  // Saved before any part, so that an attempt dying now can still abort the upload.
  if (!options.checkpoint) await options.onCheckpoint(done)

  let part = newPart(options.gzip)
  let rows = done.rows // rows encoded so far, the encoder's index
  let lastKey = done.lastKey
  let uploading: Promise<void> = Promise.resolve()

  const cut = async (final: boolean) => {
    const bytes = await part.finish()
    const upTo = { rows, lastKey }
    part = newPart(options.gzip)
    await uploading // one part in flight: checkpoints stay in order
    if (final && bytes.length === 0 && done.parts.length > 0) return
    uploading = (async () => {
      const PartNumber = done.parts.length + 1
      const { ETag } = await send<{ ETag: string }>(new s3.UploadPartCommand({ Bucket: bucket, Key: key, UploadId: done.uploadId, PartNumber, Body: bytes }))
      done.parts.push({ PartNumber, ETag })
      done.rows = upTo.rows
      done.lastKey = upTo.lastKey
      done.bytes += bytes.length
      await options.onCheckpoint({ ...done, parts: [...done.parts] })
      options.onProgress?.({ rows: done.rows, bytes: done.bytes })
    })().catch((error) => {
      throw toExportError(error, 'ERR_SINK', 'sink')
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
  const result = await send<{ ETag?: string; VersionId?: string }>(
    new s3.CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: done.uploadId, MultipartUpload: { Parts: done.parts } }),
  ).catch((error) => {
    throw new ExportError('ERR_SINK', 'sink', `Completing the upload failed: ${(error as Error).message}`, { cause: error })
  })
  return { rows: done.rows, bytes: done.bytes, location: { bucket, key, etag: result.ETag, versionId: result.VersionId } }
}

/** The bytes of one part being filled: plain text, or one gzip member. */
function newPart(gzip: boolean) {
  const chunks: Buffer[] = []
  let size = 0
  if (!gzip) {
    return {
      write: async (text: string) => {
        const bytes = Buffer.from(text)
        chunks.push(bytes)
        size += bytes.length
      },
      size: () => size,
      finish: async () => Buffer.concat(chunks, size),
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
  return {
    write: async (more: string) => {
      text += more
      if (text.length < 64 * 1024) return
      const full = member.write(text)
      text = ''
      if (!full) await once(member, 'drain')
    },
    size: () => size,
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
