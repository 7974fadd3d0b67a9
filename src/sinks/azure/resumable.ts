import { Writable } from 'node:stream'
import { checksumOf, combineAll, type ObjectChecksum } from '../../core/checksum.js'
import { ExportError, invalidOption } from '../../core/errors.js'
import { checkFunction, checkObject } from '../../core/options.js'
import type { ContentInfo, Discardable, PartInfo, SegmentSink, Sink } from '../../core/types.js'
import {
  blobUrl,
  blockBlob,
  blockId,
  blockIds,
  commitBlocks,
  discardStaged,
  locationOf,
  MAX_BLOCKS,
  newBlockRun,
  stageBlock,
  type AzureLocation,
} from './client.js'
import {
  blobParams,
  conditionOf,
  normalizeAzureSinkOptions,
  sinkFailure,
  type AzureBlobClientSinkOptions,
  type AzureBlobSinkOptions,
  type NormalizedAzureSinkOptions,
} from './options.js'

/** What a resumable blob upload saves after each staged block: enough to continue after a crash. */
export interface AzureCheckpoint {
  container: string
  blob: string
  /** The run whose block ids these are (no other run stages under it). */
  run: string
  /** Staged blocks, in order: their ids and checksums (the blob's is combined from them). */
  blocks: Array<{ id: string; checksum?: ObjectChecksum }>
  /** Source key of the last row inside the staged blocks (undefined: none yet). */
  lastKey?: unknown
  /** Rows written inside the staged blocks. */
  rows: number
  /** Bytes staged. */
  bytes: number
  /** Every block is staged, the end of the format too: what remains is Put Block List. */
  ended?: boolean
  /** The content's type and encoding, as the export's stages gave them: an attempt that only commits sets them. */
  contentType?: string
  contentEncoding?: string
}

/** What azureResumableUpload takes beside the sink's options. */
export interface AzureCheckpointOptions {
  /** Where an earlier attempt stopped (as `onCheckpoint` last saved it). */
  checkpoint?: AzureCheckpoint
  /** Persists the checkpoint (a job's data, a row, a file); awaited after every staged block. */
  onCheckpoint(checkpoint: AzureCheckpoint): Promise<unknown>
}

/** azureResumableUpload's options: the sink's (a container and a blob name), and the checkpoint. */
export interface AzureResumableUploadOptions extends AzureBlobSinkOptions, AzureCheckpointOptions {}

/** Or with the blob's own client (`blobClient`) instead of a container and a name. */
export interface AzureResumableBlobClientOptions extends AzureBlobClientSinkOptions, AzureCheckpointOptions {}

/**
 * One block blob written as the segments of an export (exportStream cuts them at row boundaries,
 * a gzip member each, the format's header only in the first and its end only in the last), each
 * staged as a block and checkpointed, so that an attempt after a crash continues with the next
 * block and the next key instead of starting over. Give it as `exportStream({ sink })` after
 * `open()`; a keyset source continues from `checkpoint.lastKey`. Azure keeps staged blocks for
 * seven days: a crashed export continued within them loses nothing.
 */
export class AzureResumableUpload extends Writable implements SegmentSink<AzureLocation> {
  readonly #options: NormalizedAzureSinkOptions
  readonly #save: (checkpoint: AzureCheckpoint) => Promise<unknown>
  readonly #blob
  #done: AzureCheckpoint
  readonly #firstBlock: number
  readonly #startRow: number
  #info: ContentInfo = {}
  #location: AzureLocation | undefined
  #checksum: ObjectChecksum | undefined
  #pausing = false

  constructor(options: AzureResumableUploadOptions | AzureResumableBlobClientOptions) {
    super()
    const { checkpoint, onCheckpoint, ...sink } = options
    checkObject('options', options)
    checkFunction('onCheckpoint', onCheckpoint)
    this.#options = normalizeAzureSinkOptions(sink)
    this.#save = onCheckpoint
    this.#blob = blockBlob(this.#options.containerClient, this.#options.blobName)
    const { containerName } = this.#options.containerClient
    if (
      checkpoint !== undefined &&
      (checkpoint?.blob !== this.#options.blobName || checkpoint.container !== containerName || !Array.isArray(checkpoint.blocks))
    )
      invalidOption('checkpoint', `a checkpoint of ${containerName}/${this.#options.blobName}`, checkpoint)
    this.#done = checkpoint
      ? { ...checkpoint, blocks: [...checkpoint.blocks] }
      : { container: containerName, blob: this.#options.blobName, run: newBlockRun(), blocks: [], rows: 0, bytes: 0 }
    this.#firstBlock = this.#done.blocks.length + 1
    this.#startRow = this.#done.rows
  }

  setContentInfo(info: ContentInfo): void {
    this.#info = info
  }

  /** The checkpoint as it stands (blocks staged by this attempt and those before it). */
  get checkpoint(): AzureCheckpoint {
    return this.#done
  }

  /**
   * Checks that the checkpoint's blocks are still staged. Resolves with the blob's location when an
   * earlier attempt committed it already (it died before saying so): nothing is left to export.
   */
  async open(): Promise<AzureLocation | undefined> {
    const { blocks, ended } = this.#done
    // A new export's checkpoint is saved before any block, so that a failure's clean-up finds its blob.
    if (blocks.length === 0) return void (this.#startRow === 0 && (await this.#save({ ...this.#done, blocks: [] })))
    const ids = blocks.map((block) => block.id)
    let staged: boolean
    let landed: { etag?: string; versionId?: string } | undefined
    try {
      const uncommitted = new Set(await blockIds(this.#blob, 'uncommitted'))
      staged = ids.every((id) => uncommitted.has(id))
      const committed = staged || !ended ? [] : await blockIds(this.#blob, 'committed')
      if (committed.length === ids.length && committed.every((id, i) => id === ids[i])) landed = await this.#blob.getProperties()
    } catch (error) {
      throw new ExportError('ERR_SINK', 'sink', `Reading the blocks of ${blobUrl(this.#blob)} failed: ${(error as Error).message}`, { cause: error })
    }
    if (landed) return this.#landed(landed)
    // (Every block staged and `ended`: the previous attempt died before, or while, committing.)
    if (staged) return ended ? this.commit() : undefined
    throw new ExportError(
      'ERR_SINK',
      'sink',
      `The blocks staged for ${blobUrl(this.#blob)} are gone (another commit of the blob, or Azure's seven days) and it was not committed by this export`,
      // (Named as S3's vanished upload: a job's next attempt starts over instead of failing on this checkpoint.)
      { cause: Object.assign(new Error('The staged blocks no longer exist'), { name: 'NoSuchUpload' }) },
    )
  }

  get startRow(): number {
    return this.#startRow
  }

  partBytes(): number {
    return this.#pausing ? 1 : this.#options.blockSize
  }

  /** Ends this attempt at the next row: the export resolves `paused: true` and the checkpoint holds every row written. */
  pause(): void {
    this.#pausing = true
  }

  get pausing(): boolean {
    return this.#pausing
  }

  partSink(n: number): BlockUpload {
    const index = this.#firstBlock + n - 1
    if (index > MAX_BLOCKS) throw new ExportError('ERR_SINK', 'sink', `The blob reached Azure's limit of ${MAX_BLOCKS} blocks (raise blockSize)`)
    return new BlockUpload(this.#options, blockId(this.#done.run, index))
  }

  /** After each block, in order: it joins the checkpoint, which is saved (`ended` with the output's end). */
  async partDone(part: PartInfo<AzureLocation>, last: boolean): Promise<void> {
    const done = this.#done
    // (Parts land in order: this is block `firstBlock + n - 1` of partSink(n).)
    done.blocks.push({ id: blockId(done.run, done.blocks.length + 1), ...(part.checksum && { checksum: part.checksum }) })
    done.rows += part.rows
    done.bytes += part.bytes
    if ('lastKey' in part) done.lastKey = part.lastKey
    if (last) done.ended = true
    Object.assign(done, this.#info)
    await this.#save({ ...done, blocks: [...done.blocks] })
  }

  /** The commit point: Put Block List of every block, this attempt's and those before it. */
  async commit(): Promise<AzureLocation> {
    const ids = this.#done.blocks.map((block) => block.id)
    // (The content's headers as the first attempt's stages told them: this one may only commit.)
    const { contentType, contentEncoding } = this.#done
    const headers = { contentType: this.#info.contentType ?? contentType, contentEncoding: this.#info.contentEncoding ?? contentEncoding }
    const committed = await commitBlocks(this.#blob, ids, blobParams(this.#options, headers), conditionOf(this.#options)).catch((error: Error) => {
      throw sinkFailure(error, this.#options, `Committing ${blobUrl(this.#blob)} failed: ${error.message}`)
    })
    return this.#landed(committed)
  }

  #landed({ etag, versionId }: { etag?: string; versionId?: string }): AzureLocation {
    const sums = this.#done.blocks.map((block) => block.checksum)
    if (sums.every((sum): sum is ObjectChecksum => sum !== undefined)) {
      const whole = combineAll(sums)
      if (whole) this.#checksum = { ...whole, verifiedByStore: false }
    }
    return (this.#location = { ...locationOf(this.#options.containerClient, this.#options.blobName), ...(etag && { etag }), ...(versionId && { versionId }) })
  }

  get location(): AzureLocation | undefined {
    return this.#location
  }

  /** Gives the export up: discards its staged blocks (where no blob exists at the name; see azureBlobSink). */
  async discard(): Promise<void> {
    await discardStaged(this.#blob)
  }

  /** The blob's full checksum once committed: of every block, earlier attempts' too. */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }
}

/** One block of a resumable upload: its bytes are gathered, then staged as one Put Block on finish. */
class BlockUpload extends Writable implements Sink<AzureLocation>, Discardable {
  readonly #options: NormalizedAzureSinkOptions
  readonly #id: string
  readonly #chunks: Buffer[] = []
  #location: AzureLocation | undefined
  #checksum: ObjectChecksum | undefined

  constructor(options: NormalizedAzureSinkOptions, id: string) {
    super()
    this.#options = options
    this.#id = id
  }

  get location(): AzureLocation | undefined {
    return this.#location
  }

  /** The block's checksum, once staged (the blob's is combined from its blocks'). */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }

  /** A failed attempt keeps its blocks: the next attempt continues the blob. */
  discard(): Promise<void> {
    return Promise.resolve()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#chunks.push(chunk)
    callback()
  }

  override _final(callback: (error?: Error | null) => void): void {
    const { containerClient, blobName, checksum } = this.#options
    const body = Buffer.concat(this.#chunks)
    stageBlock(blockBlob(containerClient, blobName), this.#id, body).then(
      async () => {
        if (checksum) this.#checksum = await checksumOf(checksum, body)
        this.#location = locationOf(containerClient, blobName)
        callback()
      },
      (error: Error) => callback(new ExportError('ERR_SINK', 'sink', `Staging a block of ${blobName} failed: ${error.message}`, { cause: error })),
    )
  }
}

/** A resumable block blob upload (see AzureResumableUpload); `open()` it before the export. */
export function azureResumableUpload(options: AzureResumableUploadOptions | AzureResumableBlobClientOptions): AzureResumableUpload {
  return new AzureResumableUpload(options)
}
