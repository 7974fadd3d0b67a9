// The shards of one object: several workers write key ranges of one export as parts of one
// multipart upload, each within its own range of part numbers, and a coordinator (the flow's
// parent job) completes it. S3 takes parts of at least 5 MiB but the last: a shard's first and
// last pieces, which may be small, are held as objects of their own (`stash`) until the
// coordinator joins them to their neighbours, in key order.
import { createHash } from 'node:crypto'
import { Writable } from 'node:stream'
import * as zlib from 'node:zlib'
import { checksumOf, type ChecksumAlgorithm } from '../../core/checksum.js'
import { ExportError } from '../../core/errors.js'
import { decompressZstdSync } from '../../core/zstd-frames.js'
import { removeAll } from '../../core/remove-all.js'
import type { CompressionName, PartInfo, SegmentSink } from '../../core/types.js'
import { deleteObject, getObject, isGone, listKeys, type S3ClientLike, type S3Location } from './client.js'
import { MAX_PARTS, MIN_PART_SIZE, MultipartUpload, partSizeFor, type UploadedPart } from './multipart.js'
import { PartUpload, recordPart, sinkError, type ExportCheckpoint } from './resumable.js'

/** One shard's share of the upload, as the coordinator hands it to the shard's job. */
export interface ShardAssignment {
  /** From 0, in key order. */
  index: number
  shards: number
  bucket: string
  key: string
  uploadId: string
  /** The first part number reserved for this shard, and how many follow it. */
  firstPart: number
  partCount: number
  /** Key prefix of the pieces held apart (`stash`), e.g. `exports/42.csv.gz.shards/`. */
  stashPrefix: string
  /** A JSON array: its `]` is the last shard's, its `[` the first row's (see `jsonArrayStart`). */
  jsonArray?: boolean
  /** The upload's full-object checksum algorithm: every part carries its checksum. */
  checksum?: ChecksumAlgorithm
}

/** What a shard's job returns to the coordinator: its pieces, in order. */
export interface ShardResult {
  index: number
  rows: number
  bytes: number
  parts: ExportCheckpoint['parts']
}

/**
 * Part numbers for `shards` shards within S3's 10,000: an equal range each. A shard's parts grow
 * as an upload's do (doubled every 1,000 parts), scaled to its range, so that the shards together
 * hold what one upload of the same part size holds.
 */
export function reservePartNumbers(shards: number): { partCount: number; firstPart: (index: number) => number } {
  const partCount = Math.floor(MAX_PARTS / shards)
  if (partCount < 2)
    throw new ExportError('ERR_INVALID_OPTION', 'options', `Expected at most ${MAX_PARTS / 2} shards (two parts each within S3's ${MAX_PARTS}), got ${shards}`)
  return { partCount, firstPart: (index) => 1 + index * partCount }
}

export interface ShardUploadOptions {
  client: S3ClientLike
  shard: ShardAssignment
  /** The upload's first part size; later parts grow (see reservePartNumbers). */
  partSize: number
  /** Where an earlier attempt of this shard stopped. */
  checkpoint?: ExportCheckpoint
  /** Persist the checkpoint (e.g. job.updateData); awaited after every completed part. */
  onCheckpoint(checkpoint: ExportCheckpoint): Promise<unknown>
}

/**
 * A shard's pieces of the coordinator's upload, as the sink of `exportStream` (segments cut at row
 * boundaries, a gzip member each), checkpointed after every piece so that a crashed attempt's
 * successor continues with the next piece and the next key. Its "commit" only says the shard is
 * whole: the coordinator completes the upload (see `assembleShards`).
 */
export class ShardUpload extends Writable implements SegmentSink<S3Location> {
  readonly #options: ShardUploadOptions
  readonly #upload: MultipartUpload
  #done: ExportCheckpoint
  readonly #firstPiece: number
  #location: S3Location | undefined

  constructor(options: ShardUploadOptions) {
    super()
    this.#options = options
    const { shard, checkpoint } = options
    this.#upload = new MultipartUpload({ client: options.client, bucket: shard.bucket, key: shard.key }, shard.uploadId, shard.checksum)
    this.#done = checkpoint
      ? { ...checkpoint, parts: [...checkpoint.parts] }
      : { uploadId: shard.uploadId, bucket: shard.bucket, key: shard.key, parts: [], rows: 0, bytes: 0 }
    this.#firstPiece = this.#done.parts.length + 1
  }

  /** The checkpoint as it stands. */
  get checkpoint(): ExportCheckpoint {
    return this.#done
  }

  /** Whether the coordinator's upload still exists (a failed flow aborts it). */
  exists(): Promise<boolean> {
    return this.#upload.exists().catch((error) => {
      throw sinkError(error)
    })
  }

  /** After a failed flow: removes the pieces this shard held apart. */
  async discard(): Promise<void> {
    const { client, shard } = this.#options
    await removeStash(client, { bucket: shard.bucket, stashPrefix: `${shard.stashPrefix}${shard.index}-` })
  }

  /** Shards after the first continue the output (no header); a resumed one its own rows. */
  get startRow(): number {
    return (this.#options.shard.index > 0 ? 1 : 0) + this.#done.rows
  }

  /** A JSON array is closed by the last shard only; a CSV's end (its header with no rows) is written by each. */
  get writesEnd(): boolean {
    const { shard } = this.#options
    return !shard.jsonArray || shard.index === shard.shards - 1
  }

  partBytes(n: number): number {
    const piece = this.#firstPiece + n - 1
    return partSizeFor(Math.ceil((piece * MAX_PARTS) / this.#options.shard.partCount), this.#options.partSize)
  }

  partSink(n: number, isLast: () => boolean): PartUpload {
    const { shard } = this.#options
    const piece = this.#firstPiece + n - 1
    if (piece > shard.partCount)
      throw new ExportError('ERR_SINK', 'sink', `Shard ${shard.index} filled its ${shard.partCount} part numbers: use fewer shards or a larger partSize`)
    // The first shard's first piece starts the object: only what follows another shard's end waits.
    const held = () => (piece === 1 && shard.index > 0) || isLast()
    return new PartUpload(this.#upload, shard.firstPart + piece - 1, () => (held() ? `${shard.stashPrefix}${shard.index}-${piece}` : undefined))
  }

  async partDone(part: PartInfo<S3Location>, last: boolean): Promise<void> {
    const done = this.#done
    const { shard } = this.#options
    const stash = part.location.key === shard.key ? {} : { stash: part.location.key }
    const entry = { PartNumber: shard.firstPart + done.parts.length, ETag: part.location.etag!, ...stash, ...(part.checksum && { checksum: part.checksum }) }
    await this.#options.onCheckpoint(recordPart(done, entry, part, last))
  }

  /** The shard is whole; the object is not there yet (the coordinator completes it). */
  commit(): Promise<S3Location> {
    const { bucket, key } = this.#options.shard
    return Promise.resolve((this.#location = { bucket, key }))
  }

  get location(): S3Location | undefined {
    return this.#location
  }
}

/**
 * The coordinator's commit: joins the shards' held pieces to their neighbours (uploaded as parts of
 * at least 5 MiB, or as the last part), in key order, and completes the upload. Memory: the pieces
 * joined into one part, about 5 MiB plus one piece. Resolves with the parts listed in the completion
 * and the object's checksum (an upload with a checksum algorithm).
 */
export async function assembleShards(
  client: S3ClientLike,
  shard: Pick<ShardAssignment, 'bucket' | 'key' | 'uploadId' | 'checksum'>,
  results: ShardResult[],
  /**
   * Mends the first bytes of the object, where the shard that wrote them could not know they were
   * the first: the first piece held apart that holds any (`undefined`: it holds none) unless a
   * part came before it. See `jsonArrayStart`.
   */
  start?: (piece: Buffer) => Buffer | undefined,
) {
  const { bucket, key, uploadId } = shard
  const upload = new MultipartUpload({ client, bucket, key }, uploadId, shard.checksum)
  const parts: UploadedPart[] = []
  let pending: Buffer[] = []
  let pendingBytes = 0
  let pendingNumber = 0
  // The upload is gone: a coordinator before this one completed it and died before saying so, or
  // it was aborted. The parts' ETags (their MD5s) are computed instead, to tell which (see below).
  let gone = false
  const flush = async () => {
    const body = Buffer.concat(pending)
    let part: UploadedPart = { PartNumber: pendingNumber, ETag: `"${createHash('md5').update(body).digest('hex')}"` }
    if (!gone) {
      try {
        part = await upload.uploadPart(pendingNumber, body)
      } catch (error) {
        if (!isGone(error)) throw error
        gone = true
      }
    }
    // (Gone: the part's checksum is computed here too, for the object's, which a completion gave.)
    if (gone && shard.checksum) part.checksum = await checksumOf(shard.checksum, body)
    parts.push(part)
    pending = []
    pendingBytes = 0
  }
  let started = start === undefined
  try {
    for (const result of [...results].sort((a, b) => a.index - b.index)) {
      for (const part of result.parts) {
        if (part.stash === undefined) {
          // A piece held before this part ends with the first piece of this shard, which was cut full.
          if (pending.length > 0) await flush()
          parts.push({ PartNumber: part.PartNumber, ETag: part.ETag, ...(part.checksum && { checksum: part.checksum }) })
          started = true
          continue
        }
        let bytes = await getObject({ client, bucket, key: part.stash })
        if (bytes === undefined) throw new ExportError('ERR_SINK', 'sink', `The piece ${part.stash} of ${key} is missing`)
        if (!started) {
          const mended = start!(bytes)
          if (mended !== undefined) [bytes, started] = [mended, true]
        }
        pending.push(bytes)
        pendingBytes += bytes.length
        pendingNumber = part.PartNumber
        if (pendingBytes >= MIN_PART_SIZE) await flush()
      }
    }
    if (pending.length > 0) await flush()
    // complete() tells a completed upload (the object's multipart ETag is these parts') from an aborted one.
    const { checksum } = await upload.complete(parts)
    return { parts, checksum }
  } catch (error) {
    throw sinkError(error)
  }
}

/** A failed flow: its upload aborted and every piece held apart removed. */
export async function discardShards(client: S3ClientLike, shard: Pick<ShardAssignment, 'bucket' | 'key' | 'uploadId' | 'stashPrefix'>): Promise<string[]> {
  const { bucket, key, uploadId } = shard
  await new MultipartUpload({ client, bucket, key }, uploadId).abort()
  return removeStash(client, shard)
}

/**
 * Removes what is held apart under the stash prefix (after the completion, or after a failure),
 * every object it can (see removeAll); resolves with the keys it could not remove.
 */
export async function removeStash(client: S3ClientLike, { bucket, stashPrefix }: Pick<ShardAssignment, 'bucket' | 'stashPrefix'>): Promise<string[]> {
  return removeAll(await listKeys(client, bucket, stashPrefix), (key) => deleteObject({ client, bucket, key }))
}

/**
 * The start of a JSON array joined from shards. Each shard writes its rows as if rows came before
 * (`,` then the row), the first shard's first row `[` then the row, and the last shard the `]`.
 * When the first shards are empty, the first row found is a later shard's: its `,` becomes `[`;
 * when every shard is empty, the last one's `\n]\n` becomes `[]\n`. Compressed pieces are one or
 * more gzip members or zstd frames: decompressed, mended, compressed again.
 */
export function jsonArrayStart(compression: CompressionName | undefined): (piece: Buffer) => Buffer | undefined {
  const [decompress, compress] = compression === undefined ? [] : CODECS[compression]()
  return (piece) => {
    const text = decompress ? decompress(piece) : piece
    if (text.length === 0) return undefined
    let mended: Buffer
    const COMMA = 0x2c
    if (text.length === 3 && text.toString() === '\n]\n') mended = Buffer.from('[]\n')
    else if (text[0] === COMMA) mended = Buffer.concat([Buffer.from('['), text.subarray(1)])
    else return piece // the first shard's first row: `[` already
    return compress ? compress(mended) : mended
  }
}

type Codec = (bytes: Buffer) => Buffer
// node:zlib's zstd (Node >= 22.15; a zstd export could not have started without it), frame by frame.
const CODECS: Record<CompressionName, () => [Codec, Codec]> = {
  gzip: () => [zlib.gunzipSync, (bytes) => zlib.gzipSync(bytes)],
  zstd: () => {
    const { zstdCompressSync } = zlib as unknown as Record<string, Codec>
    return [decompressZstdSync, zstdCompressSync!]
  },
}
