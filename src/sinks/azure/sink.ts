import { Writable } from 'node:stream'
import { Checksummer, type ObjectChecksum } from '../../core/checksum.js'
import { ExportError, toExportError } from '../../core/errors.js'
import type { CommitHook, ContentInfo, Discardable, PartStore, Sink, SplitSink, StageTelemetry, TelemetryAttributes } from '../../core/types.js'
import {
  blobUrl,
  blockBlob,
  blockId,
  commitBlocks,
  discardStaged,
  listBlobs,
  locationOf,
  MAX_BLOCKS,
  newBlockRun,
  oneBlobError,
  oneBlobOf,
  readBlob,
  removeBlob,
  stageBlock,
  writeBlob,
  type AzureLocation,
} from './client.js'
import {
  blobParams,
  conditionOf,
  normalizeAzureSinkOptions,
  refusedError,
  sinkFailure,
  type AzureBlobClientSinkOptions,
  type AzureBlobSinkOptions,
  type NormalizedAzureSinkOptions,
} from './options.js'

const stoppedError = () => new ExportError('ERR_ABORTED', 'sink', 'The upload was stopped before it completed')

/**
 * An Azure Blob Storage sink (see `azureBlobSink`): a block blob staged block by block and
 * committed by Put Block List, its commit point. A destroy before it discards the staged blocks.
 */
export class AzureBlobSink extends Writable implements Sink<AzureLocation>, SplitSink<AzureLocation>, Discardable, CommitHook {
  readonly #options: NormalizedAzureSinkOptions
  readonly #blob
  readonly #run = newBlockRun()
  readonly #cancel = new AbortController()
  #info: ContentInfo = {}
  #buffered: Buffer[] = []
  #bufferedBytes = 0
  readonly #sum: Checksummer | undefined
  #checksum: ObjectChecksum | undefined
  readonly #ids: string[] = []
  readonly #inFlight = new Set<Promise<void>>()
  #failure: unknown
  #uploadedBytes = 0
  #location: AzureLocation | undefined
  #stopped = false
  #committing: Promise<unknown> | undefined
  #checked: Promise<void> | undefined
  #leftBehind: string[] = []
  #telemetry: StageTelemetry | undefined
  /** Awaited once every block is staged, before Put Block List (see CommitHook). */
  beforeCommit: (() => Promise<void>) | undefined = undefined

  constructor(options: NormalizedAzureSinkOptions) {
    super({ highWaterMark: 64 * 1024 })
    this.#options = options
    this.#blob = blockBlob(options.containerClient, options.blobName)
    this.#sum = options.checksum ? new Checksummer(options.checksum) : undefined
  }

  /** `{ container, blob, url, etag }` once Azure has committed the blob. */
  get location(): AzureLocation | undefined {
    return this.#location
  }

  /** After a failure: the staged blocks this sink could not discard. */
  get leftBehind(): string[] {
    return this.#leftBehind
  }

  /** The blob's full checksum, once committed (computed here: Azure checks each block's MD5, not the whole). */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }

  /** Bytes Azure has acknowledged (staged blocks). */
  get uploadedBytes(): number {
    return this.#uploadedBytes
  }

  setContentInfo(info: ContentInfo): void {
    this.#info = info
  }

  setTelemetry(telemetry: StageTelemetry): void {
    this.#telemetry = telemetry
  }

  #record<T>(name: string, attributes: TelemetryAttributes, work: () => Promise<T>): Promise<T> {
    return this.#telemetry ? this.#telemetry.span(name, attributes, work) : work()
  }

  /** The blobs of a split export beside this sink's: each part with this sink's options, the manifest one Put Blob of JSON. */
  partStore(): PartStore<AzureLocation> {
    return azurePartStore(this.#options, () => this.#info)
  }

  /** Deletes the blob this sink committed. */
  async discard(): Promise<void> {
    if (this.#location === undefined) return
    await this.#blob.deleteIfExists({ conditions: { ifMatch: this.#location.etag } })
    this.#location = undefined
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#checked === undefined)
      return void this.#check().then(
        () => (this.#stopped ? callback(stoppedError()) : this._write(chunk, encoding, callback)),
        (error: Error) => callback(error),
      )
    if (this.#failure !== undefined) return callback(sinkFailure(this.#failure, this.#options))
    this.#buffered.push(chunk)
    this.#bufferedBytes += chunk.length
    this.#sum?.update(chunk)
    if (this.#bufferedBytes < this.#options.blockSize) return callback()
    this.#startBlock(this.#takeBuffered()).then(
      () => callback(),
      (error) => callback(sinkFailure(error, this.#options)),
    )
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#check()
      .then(() => this.#commit())
      .then(
        () => callback(),
        (error) => callback(sinkFailure(error, this.#options)),
      )
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopped = true
    this.#cleanUp(error).then(
      () => callback(error),
      (cleanUpError) => callback(error ?? toExportError(cleanUpError, 'ERR_SINK', 'sink')),
    )
  }

  // overwrite: false, checked once before the first byte: an export it refuses sends nothing.
  #check(): Promise<void> {
    return (this.#checked ??=
      this.#options.overwrite === false
        ? this.#blob.exists().then(
            (exists) => {
              if (exists) throw refusedError(this.#options.blobName)
            },
            (error: unknown) => {
              throw toExportError(error, 'ERR_SINK', 'sink')
            },
          )
        : Promise.resolve())
  }

  #takeBuffered(): Buffer {
    const body = Buffer.concat(this.#buffered, this.#bufferedBytes)
    this.#buffered = []
    this.#bufferedBytes = 0
    return body
  }

  async #stage(body: Buffer): Promise<void> {
    const n = this.#ids.length + 1
    if (n > MAX_BLOCKS) throw new ExportError('ERR_SINK', 'sink', `The blob reached Azure's limit of ${MAX_BLOCKS} blocks (raise blockSize)`)
    const id = blockId(this.#run, n)
    this.#ids.push(id)
    const attributes = { 'stream_export.blob': this.#options.blobName, 'stream_export.part': n, 'stream_export.part_bytes': body.length }
    await this.#record('stream-export upload part', attributes, () => stageBlock(this.#blob, id, body, this.#cancel.signal))
    this.#uploadedBytes += body.length
    this.#telemetry?.event('part', attributes)
  }

  // At most `concurrency` blocks stage while one more fills: blockSize x (concurrency + 1) in all.
  async #startBlock(body: Buffer): Promise<void> {
    while (this.#inFlight.size >= this.#options.concurrency && this.#failure === undefined) await Promise.race(this.#inFlight)
    if (this.#failure !== undefined) throw sinkFailure(this.#failure, this.#options)
    const tracked: Promise<void> = this.#stage(body).then(
      () => void this.#inFlight.delete(tracked),
      (error) => {
        this.#failure ??= error
        this.#inFlight.delete(tracked)
      },
    )
    this.#inFlight.add(tracked)
  }

  async #commit(): Promise<void> {
    if (this.#bufferedBytes > 0) await this.#startBlock(this.#takeBuffered())
    await Promise.all(this.#inFlight)
    if (this.#failure !== undefined) throw sinkFailure(this.#failure, this.#options)
    const checksum = await this.#sum?.digest()
    await this.beforeCommit?.()
    if (this.#stopped) throw stoppedError()
    const { blobName } = this.#options
    const params = blobParams(this.#options, this.#info)
    // The commit point: not cancellable, so that its outcome is known. Once sent, a destroy waits for it.
    const commit = () => commitBlocks(this.#blob, this.#ids, params, conditionOf(this.#options))
    const attributes = { 'stream_export.blob': blobName, 'stream_export.parts': this.#ids.length, 'stream_export.bytes': this.#uploadedBytes }
    this.#committing = this.#record('stream-export commit', attributes, commit).then(({ etag, versionId }) => {
      if (checksum) this.#checksum = { ...checksum, verifiedByStore: false }
      this.#location = { ...locationOf(this.#options.containerClient, blobName), ...(etag && { etag }), ...(versionId && { versionId }) }
    })
    await this.#committing
  }

  async #cleanUp(error: Error | null): Promise<void> {
    await this.#committing?.catch(() => {})
    if (this.#location !== undefined || this.#ids.length === 0) return
    this.#cancel.abort(error ?? new Error('destroyed'))
    await Promise.allSettled(this.#inFlight)
    const discarded = await discardStaged(this.#blob).catch((cleanUpError: unknown) => {
      this.#leftBehind = [
        `${blobUrl(this.#blob)} (${this.#ids.length} staged blocks, or the empty blob that discards them; Azure discards staged blocks within 7 days)`,
      ]
      throw cleanUpError
    })
    // (A blob at the name: its next commit discards them, or Azure within 7 days; its content is untouched.)
    if (!discarded) return
  }
}

/**
 * Azure Blob Storage sink: a block blob staged in blocks of `blockSize` (each with its MD5, which
 * Azure checks) and committed by Put Block List, the commit point: before it no blob appears (or
 * changes), after it the export has landed. On any error or abort it waits for the blocks in
 * flight and discards what it staged. Memory: blockSize x (concurrency + 1). As the last stage of
 * `exportStream({ split })` or `partitionBy`, it writes the parts and the manifest beside `blobName`.
 */
export function azureBlobSink(options: AzureBlobSinkOptions | AzureBlobClientSinkOptions): AzureBlobSink {
  return new AzureBlobSink(normalizeAzureSinkOptions(options))
}

/** The blobs of an export in parts beside `options.blobName`: each part an AzureBlobSink, the manifest one Put Blob of JSON. */
export function azurePartStore(options: NormalizedAzureSinkOptions, info: () => ContentInfo = () => ({})): PartStore<AzureLocation> {
  const { containerClient: container, tags } = options
  if (oneBlobOf(container) !== undefined) throw oneBlobError(options.blobName)
  return {
    name: options.blobName,
    sink: (name) => {
      const sink = new AzureBlobSink({ ...options, blobName: name })
      sink.setContentInfo(info())
      return sink
    },
    read: (name) => readBlob(container, name),
    // Not in the sink's tier: the manifest is read before every later export (an archived one could not be).
    write: (name, body) => writeBlob(container, name, body, { blobHTTPHeaders: { blobContentType: 'application/json' }, ...(tags && { tags }) }),
    remove: (name) => removeBlob(container, name),
    locationOf: (name) => locationOf(container, name),
    list: (prefix) => listBlobs(container, prefix),
  }
}
