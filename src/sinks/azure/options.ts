// The options of azureBlobSink: what it writes with (block size, headers, metadata, tags, tier,
// checksum, overwrite), checked and defaulted apart from any stream.
import { checkChecksumOption, type ChecksumAlgorithm } from '../../core/checksum.js'
import { ExportError, invalidOption, toExportError } from '../../core/errors.js'
import { checkBoolean, checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { MAX_BLOCK_SIZE, containerOfBlob, statusOf, type AzureBlobLike, type AzureContainerLike, type BlobParams, type BlobCondition } from './client.js'

/** azureBlobSink's options: the container and the blob's name, and how it is written. */
export interface AzureBlobSinkOptions extends AzureBlobWriteOptions {
  /** The container (`BlobServiceClient.fromConnectionString(...).getContainerClient('exports')`); it must exist. */
  containerClient: AzureContainerLike
  /** The blob's name in the container, e.g. `statements/2026-02.csv.gz`. A split export's parts are named after it. */
  blobName: string
}

/**
 * Or the blob's own client instead (a `BlockBlobClient`, e.g. made from a URL with a SAS that may
 * read, write and delete it, `rwd`): the sink writes that one blob (split and partitioned output,
 * which write blobs beside it, need `containerClient`).
 */
export interface AzureBlobClientSinkOptions extends AzureBlobWriteOptions {
  blobClient: AzureBlobLike
}

/** How the blob is written. */
export interface AzureBlobWriteOptions {
  /**
   * Default: from the format (`text/csv; charset=utf-8`, `application/x-ndjson`, ...),
   * `application/gzip` when the gzip stage is on.
   */
  contentType?: string
  /** Default: none (a gzipped export is a .gz file). `gzip` makes browsers decompress it on download. */
  contentEncoding?: string
  /** e.g. `attachment; filename="statements.csv.gz"` (a SAS link can set its own: `azureDownloadUrl`). */
  contentDisposition?: string
  metadata?: Record<string, string>
  /** Blob index tags, e.g. `{ retention: '30d' }` (what lifecycle rules and queries by tag key on). */
  tags?: Record<string, string>
  /** The access tier: `Hot`, `Cool`, `Cold` or `Archive` (an archived blob must be rehydrated before it can be read). */
  tier?: string
  /**
   * Bytes per block. Default 8 MiB, at most 4000 MiB; a blob holds at most 50,000 blocks (8 MiB
   * blocks: ~390 GiB). Memory: blockSize x (concurrency + 1).
   */
  blockSize?: number
  /** Blocks staged concurrently. Default 4. */
  concurrency?: number
  /**
   * The blob's full checksum, computed as the bytes pass (each block is also sent with its MD5,
   * which Azure checks on arrival): `CRC64NVME` (default), `CRC32C`, `CRC32`, or `false`. Azure does
   * not check a whole blob's checksum, so the result's says `verifiedByStore: false`.
   */
  checksum?: ChecksumAlgorithm | false
  /**
   * `false`: never replace a blob. A blob at the name is refused before any byte is sent
   * (ERR_PRECONDITION), and the commit is conditional (`If-None-Match: *`). Default `true`.
   */
  overwrite?: boolean
}

const MiB = 1024 * 1024

export type NormalizedAzureSinkOptions = Readonly<
  Omit<AzureBlobWriteOptions, 'blockSize' | 'concurrency' | 'checksum'> & {
    containerClient: AzureContainerLike
    blobName: string
    blockSize: number
    concurrency: number
    checksum: ChecksumAlgorithm | false
  }
>

const AZURE_SINK_OPTION_NAMES = optionNames<AzureBlobWriteOptions & { containerClient: unknown; blobName: unknown; blobClient: unknown }>({
  containerClient: true,
  blobName: true,
  blobClient: true,
  contentType: true,
  contentEncoding: true,
  contentDisposition: true,
  metadata: true,
  tags: true,
  tier: true,
  blockSize: true,
  concurrency: true,
  checksum: true,
  overwrite: true,
})

/** Checks azureBlobSink options and fills in the defaults; throws ERR_INVALID_OPTION naming the option. */
export function normalizeAzureSinkOptions(given: AzureBlobSinkOptions | AzureBlobClientSinkOptions): NormalizedAzureSinkOptions {
  checkObject('options', given, AZURE_SINK_OPTION_NAMES)
  const options = given as Partial<AzureBlobSinkOptions & AzureBlobClientSinkOptions>
  const { blobClient, blockSize = 8 * MiB, concurrency = 4 } = options
  if (blobClient !== undefined) {
    const { getBlockBlobClient, name, containerName, url } = (blobClient ?? {}) as Partial<AzureBlobLike>
    if (typeof getBlockBlobClient !== 'function' || [name, containerName, url].some((field) => typeof field !== 'string'))
      invalidOption('blobClient', "a BlobClient or BlockBlobClient of '@azure/storage-blob'", blobClient)
    for (const name of ['containerClient', 'blobName'] as const)
      if (options[name] !== undefined) invalidOption(name, 'unset with a blobClient (it names its container and blob)', options[name])
  }
  const { blobClient: _, containerClient: __, blobName: ___, ...write } = options
  const containerClient = blobClient ? containerOfBlob(blobClient) : options.containerClient
  const blobName = blobClient ? blobClient.name : options.blobName
  if (typeof containerClient?.getBlockBlobClient !== 'function') invalidOption('containerClient', "a ContainerClient of '@azure/storage-blob'", containerClient)
  checkString('blobName', blobName)
  checkSasPermissions(blobClient ? blobClient.url : containerClient.url, blobClient ? 'blobClient' : 'containerClient', options.tags !== undefined)
  for (const name of ['contentType', 'contentEncoding', 'contentDisposition', 'tier'] as const) {
    if (options[name] !== undefined) checkString(name, options[name])
  }
  for (const name of ['metadata', 'tags'] as const) {
    const values = options[name]
    if (values === undefined) continue
    checkObject(name, values)
    for (const [key, value] of Object.entries(values)) checkString(`${name}.${key}`, value)
  }
  if (!Number.isSafeInteger(blockSize) || blockSize < 1 || blockSize > MAX_BLOCK_SIZE) invalidOption('blockSize', 'an integer from 1 to 4000 MiB', blockSize)
  checkPositiveInteger('concurrency', concurrency)
  if (options.overwrite !== undefined) checkBoolean('overwrite', options.overwrite)
  const checksum = checkChecksumOption('checksum', options.checksum)
  return Object.freeze({ ...write, containerClient, blobName, blockSize, concurrency, checksum })
}

// A SAS says what it allows (sp=): refused before any byte is sent when the sink could not read
// back (overwrite: false, a lost commit answer, a resumed upload) or delete (a failure's discard:
// an empty blob would be left at the name) what it writes, or set the tags asked for.
function checkSasPermissions(url: string, option: string, tags: boolean): void {
  const sp = typeof url === 'string' && URL.canParse(url) ? new URL(url).searchParams.get('sp') : null
  if (sp === null) return
  const missing = ['r', 'w', 'd', ...(tags ? ['t'] : [])].filter((permission) => !sp.includes(permission))
  if (missing.length > 0)
    invalidOption(
      option,
      `a client whose SAS may read, write and delete the blob (${tags ? 'rwdt with tags' : 'rwd'}); it lacks ${missing.join('')}`,
      `sp=${sp}`,
    )
}

/** What a blob is committed with: the options' headers (the content's by default), metadata, tags and tier. */
export function blobParams(options: NormalizedAzureSinkOptions, info: { contentType?: string; contentEncoding?: string }): BlobParams {
  const { contentType, contentEncoding, contentDisposition, metadata, tags, tier } = options
  return {
    blobHTTPHeaders: {
      blobContentType: contentType ?? info.contentType,
      blobContentEncoding: contentEncoding ?? info.contentEncoding,
      blobContentDisposition: contentDisposition,
    },
    ...(metadata && { metadata }),
    ...(tags && { tags }),
    ...(tier && { tier }),
  }
}

export const conditionOf = (options: NormalizedAzureSinkOptions): BlobCondition => (options.overwrite === false ? { ifNoneMatch: '*' } : {})

export const refusedError = (name: string, cause?: unknown) =>
  new ExportError('ERR_PRECONDITION', 'sink', `Refused: a blob exists at ${name} (overwrite: false)`, cause === undefined ? undefined : { cause })

/** An Azure failure as ERR_SINK (ERR_PRECONDITION when a commit's overwrite: false was refused), with `message` when given. */
export function sinkFailure(error: unknown, options: NormalizedAzureSinkOptions, message?: string): ExportError {
  if (error instanceof ExportError) return error
  const status = statusOf(error)
  if (options.overwrite === false && (status === 409 || status === 412)) return refusedError(options.blobName, error)
  return message === undefined ? toExportError(error, 'ERR_SINK', 'sink') : new ExportError('ERR_SINK', 'sink', message, { cause: error })
}
