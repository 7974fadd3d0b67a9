// Every call this library makes to Azure Blob Storage (`@azure/storage-blob`, an optional peer):
// block blobs staged block by block and committed by Put Block List, the commit point; reading,
// writing, listing and removing the blobs of a split export. The SDK retries a failed request
// itself (four tries, exponential back-off); what it cannot repair fails the export.
import { createHash, randomBytes } from 'node:crypto'
import type { BlobHTTPHeaders, BlockBlobClient, ContainerClient, Metadata, Tags } from '@azure/storage-blob'
import { ExportError } from '../../core/errors.js'
import { loadOptional } from '../../core/optional.js'

/**
 * A `ContainerClient` of `@azure/storage-blob` (`blobServiceClient.getContainerClient(name)`), typed
 * by the little this library's types need: the package is an optional peer, so that its types are
 * not required of those who do not use it.
 */
export interface AzureContainerLike {
  readonly containerName: string
  readonly url: string
  getBlockBlobClient(blobName: string): unknown
}

/**
 * A `BlobClient` or `BlockBlobClient` of `@azure/storage-blob` (`containerClient.getBlockBlobClient(name)`,
 * or `new BlockBlobClient(urlWithSas)`), typed by the little this library's types need.
 */
export interface AzureBlobLike {
  readonly containerName: string
  readonly name: string
  readonly url: string
  getBlockBlobClient(): unknown
}

const ONE_BLOB = Symbol('stream-export.azure-one-blob')

/**
 * A container as the sink sees it, given one blob's client: it serves that blob only (with the
 * client's own credential and pipeline); any other name (a split export's parts) is refused.
 */
export function containerOfBlob(blob: AzureBlobLike): AzureContainerLike {
  const { origin, pathname } = new URL(blob.url)
  const segments = pathname.split('/')
  // (Account host: /container/blob; an emulator's or IP endpoint: /account/container/blob.)
  const at = segments[1] === blob.containerName ? 1 : segments[2] === blob.containerName ? 2 : 0
  return {
    containerName: blob.containerName,
    url: `${origin}${segments.slice(0, at + 1).join('/')}`,
    get credential() {
      return (blob as unknown as { credential: unknown }).credential
    },
    [ONE_BLOB]: blob.name,
    getBlockBlobClient(name: string) {
      if (name !== blob.name) throw oneBlobError(blob.name, name)
      return blob.getBlockBlobClient()
    },
  } as AzureContainerLike
}

/** The one blob a container made by containerOfBlob serves, or `undefined` for a real container. */
export const oneBlobOf = (container: AzureContainerLike): string | undefined => (container as { [ONE_BLOB]?: string })[ONE_BLOB]

export const oneBlobError = (blob: string, other?: string) =>
  new ExportError(
    'ERR_INVALID_OPTION',
    'options',
    `A blobClient writes its one blob (${blob})${other ? `, not ${other}` : ''}: split and partitioned output write parts and a manifest beside it, so give containerClient and blobName`,
  )

/** The SDK's own type of a container (internal: see AzureContainerLike). */
export const sdkContainer = (container: AzureContainerLike): ContainerClient => container as unknown as ContainerClient

/** Where a blob landed: its container, name and URL (without a SAS), and its ETag once committed. */
export interface AzureLocation {
  container: string
  blob: string
  url: string
  etag?: string
  /** The blob's version, on an account with versioning on. */
  versionId?: string
}

/** What a blob is committed with (Put Block List, Put Blob). */
export interface BlobParams {
  blobHTTPHeaders?: BlobHTTPHeaders
  metadata?: Metadata
  tags?: Tags
  tier?: string
}

/** A condition on the commit: `ifNoneMatch: '*'` (overwrite: false) or `ifMatch` an ETag. */
export type BlobCondition = { ifNoneMatch: '*' } | { ifMatch: string } | Record<string, never>

const MiB = 1024 * 1024
/** Azure's most committed blocks in one blob. */
export const MAX_BLOCKS = 50_000
/** Azure's largest block (service version 2019-12-12 and later). */
export const MAX_BLOCK_SIZE = 4000 * MiB

export const loadAzure = () => loadOptional<typeof import('@azure/storage-blob')>('@azure/storage-blob', '@azure/storage-blob')

/** An id for this run's blocks: no other run stages blocks under it (uncommitted blocks of a blob are shared). */
export const newBlockRun = (): string => randomBytes(12).toString('hex')

/** Block `n` (from 1) of a run: base64 of one fixed length, as Azure requires of a blob's block ids. */
export const blockId = (run: string, n: number): string => Buffer.from(`${run}-${String(n).padStart(6, '0')}`).toString('base64')

export const locationOf = (container: AzureContainerLike, blob: string): AzureLocation => ({
  container: container.containerName,
  blob,
  url: blobUrl(blockBlob(container, blob)),
})

/** A blob's URL without its query: never the SAS a client made from a URL carries (results and messages are logged and sent). */
export const blobUrl = (blob: { url: string }): string => blob.url.replace(/\?.*$/, '')

/**
 * The block blob client of `name` in `container`. A name with a `.` or `..` segment, or a
 * backslash, is refused (ERR_INVALID_OPTION): a URL resolves them, so that `../other/x` would
 * reach another container and `a/./b` another blob than the one named.
 */
export function blockBlob(container: AzureContainerLike, name: string): BlockBlobClient {
  if (name.includes('\\') || name.split('/').some((segment) => segment === '.' || segment === '..'))
    throw new ExportError(
      'ERR_INVALID_OPTION',
      'options',
      `The blob name ${JSON.stringify(name)} has a '.' or '..' segment or a backslash: its URL would name another blob (or another container)`,
    )
  return sdkContainer(container).getBlockBlobClient(name)
}

/** The HTTP status of an SDK error (RestError), if it has one. */
export const statusOf = (error: unknown): number | undefined => (error as { statusCode?: number } | undefined)?.statusCode

/** Stages one block, with its MD5 (Azure checks it on arrival and refuses a block whose bytes differ). */
export async function stageBlock(blob: BlockBlobClient, id: string, body: Buffer, abortSignal?: AbortSignal): Promise<void> {
  const transactionalContentMD5 = createHash('md5').update(body).digest()
  await blob.stageBlock(id, body, body.length, { transactionalContentMD5, ...(abortSignal && { abortSignal }) })
}

/** The ids of a blob's committed or uncommitted blocks (none when there is no blob). */
export async function blockIds(blob: BlockBlobClient, list: 'committed' | 'uncommitted'): Promise<string[]> {
  const answer = await blob.getBlockList(list).catch((error: unknown) => {
    if (statusOf(error) === 404) return undefined
    throw error
  })
  const blocks = list === 'committed' ? answer?.committedBlocks : answer?.uncommittedBlocks
  return (blocks ?? []).map((block) => block.name)
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((id, i) => id === b[i])

/**
 * Put Block List: the commit point. A failure the SDK's retries could not repair may still have
 * committed (a lost reply): the blob's committed list is then this run's own ids, which no other
 * run uses, and that decides, not a guess.
 */
export async function commitBlocks(
  blob: BlockBlobClient,
  ids: readonly string[],
  params: BlobParams,
  condition: BlobCondition,
): Promise<{ etag?: string; versionId?: string }> {
  try {
    const { etag, versionId } = await blob.commitBlockList([...ids], { ...params, conditions: condition })
    return { etag, versionId }
  } catch (error) {
    if (ids.length === 0) throw error
    // (A retry of a commit that landed meets its own blob: 409/412 under ifNoneMatch.)
    const committed = await blockIds(blob, 'committed').catch((readError: Error) => {
      const why = `Put Block List failed (${(error as Error).message}), and whether it landed is unknown: the blob's block list could not be read (${readError.message})`
      throw new ExportError('ERR_SINK', 'sink', why, { cause: error })
    })
    if (!sameList(committed, ids)) throw error
    const { etag, versionId } = await blob.getProperties()
    return { etag, versionId }
  }
}

/**
 * Discards the blocks a failed run staged, when no blob exists at the name: Azure keeps
 * uncommitted blocks for seven days unless the blob is committed, so an empty list is committed
 * (only if there is still no blob) and that empty blob deleted at once. Where a blob exists, its
 * next commit discards them (its content is never touched). Resolves with whether they were.
 */
export async function discardStaged(blob: BlockBlobClient): Promise<boolean> {
  if ((await blockIds(blob, 'uncommitted')).length === 0) return true
  // Marked, so that a retry of this commit that meets the one that landed (its answer lost) knows it.
  const marker = randomBytes(12).toString('hex')
  const committed = await blob
    .commitBlockList([], { metadata: { streamexportdiscard: marker }, conditions: { ifNoneMatch: '*' } })
    .catch(async (error: unknown) => {
      const status = statusOf(error)
      if (status !== 409 && status !== 412) throw error
      const there = await blob.getProperties()
      return there.metadata?.streamexportdiscard === marker ? there : undefined // else a blob not ours to touch
    })
  if (committed === undefined) return false
  await blob.deleteIfExists({ conditions: { ifMatch: committed.etag } })
  return true
}

/** The bytes of a blob, or `undefined` when there is none. */
export async function readBlob(container: AzureContainerLike, name: string): Promise<Buffer | undefined> {
  return blockBlob(container, name)
    .downloadToBuffer()
    .catch((error: unknown) => {
      if (statusOf(error) === 404) return undefined
      throw error
    })
}

/** Writes a whole blob in one request (Put Blob: its own commit point). */
export async function writeBlob(container: AzureContainerLike, name: string, body: Buffer, params: BlobParams): Promise<AzureLocation> {
  const blob = blockBlob(container, name)
  const { etag, versionId } = await blob.upload(body, body.length, { ...params, transactionalContentMD5: createHash('md5').update(body).digest() })
  return { ...locationOf(container, name), ...(etag && { etag }), ...(versionId && { versionId }) }
}

export async function removeBlob(container: AzureContainerLike, name: string): Promise<void> {
  await blockBlob(container, name).deleteIfExists()
}

/** The names of a container's blobs under `prefix` (`uncommitted`: blobs that have only staged blocks too). */
export async function listBlobs(container: AzureContainerLike, prefix: string, uncommitted = false): Promise<string[]> {
  const names: string[] = []
  for await (const item of sdkContainer(container).listBlobsFlat({ prefix, ...(uncommitted && { includeUncommitedBlobs: true }) })) names.push(item.name)
  return names
}
