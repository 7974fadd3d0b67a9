// Where verifyExport reads an export back from: files, S3 (or GCS) objects, Azure blobs. Each
// reads a name whole or as a stream, and says which checksum the store itself keeps of it.
import { open, readFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { ChecksumAlgorithm, ObjectChecksum } from '../core/checksum.js'
import { ExportError, invalidOption } from '../core/errors.js'
import { schemeOf } from '../core/location.js'
import type { Location } from '../core/types.js'
import { blockBlob, readBlob, type AzureContainerLike } from '../sinks/azure/client.js'
import { checksumField, getObject, loadS3, send, targetParams, type S3ClientLike, type S3Target } from '../sinks/s3/client.js'
import { isGcsClient } from '../sinks/s3/gcs.js'
import { customerKey } from '../sinks/s3/options.js'

/** An Azure blob, as verifyExport takes and reports it. */
export interface BlobRef {
  container: string
  blob: string
}

/** A file, an S3 object or an Azure blob. */
export type VerifyLocation = Location | BlobRef

/** A checksum to compare with: an ObjectChecksum (its `bytes` compared too, when given). */
export type ExpectedChecksum = Pick<ObjectChecksum, 'algorithm' | 'value'> & { bytes?: number }

export interface Store {
  location: VerifyLocation
  at(name: string): VerifyLocation
  /** `s3://bucket/key` (`gs://` on GCS), `az://container/blob` or the path, for messages. */
  describe(name: string): string
  read(name: string): Promise<Buffer | undefined>
  /** The bytes as a stream, or `undefined` when nothing is stored there. */
  stream(name: string): Promise<Readable | undefined>
  keptChecksum(name: string): Promise<ExpectedChecksum | undefined>
}

/** `s3://bucket/key`, `az://container/blob` or the path. */
export const describeLocation = (location: VerifyLocation): string =>
  'path' in location ? location.path : 'blob' in location ? `az://${location.container}/${location.blob}` : `s3://${location.bucket}/${location.key}`

/** The name of a location in its store: the path, the key, the blob. */
export const nameIn = (location: VerifyLocation): string => ('path' in location ? location.path : 'blob' in location ? location.blob : location.key)

/** The store a target is in: `s3://` and `gs://` need `client`, `az://` the `container` it names. */
export function storeOf(options: {
  target: string | VerifyLocation
  client?: S3ClientLike
  container?: AzureContainerLike
  sseCustomerKey?: Uint8Array | string
}): Store {
  const { target, client, container, sseCustomerKey } = options
  const location = typeof target === 'string' ? parseTarget(target) : target
  const fields = (location ?? {}) as Record<string, unknown>
  const named = (...keys: string[]) => keys.every((key) => typeof fields[key] === 'string' && fields[key] !== '')
  if (!(named('path') || named('bucket', 'key') || named('container', 'blob')))
    invalidOption('target', 'a path, a URL (s3://, gs://, az://) or a location: { path }, { bucket, key } or { container, blob }', target)
  if ('blob' in location) {
    for (const [name, value] of Object.entries({ client, sseCustomerKey }))
      if (value !== undefined) invalidOption(name, `unset for an Azure blob (${describeLocation(location)})`, value)
    return blobStore(location, container)
  }
  if (container !== undefined) invalidOption('container', `unset for ${describeLocation(location)} (it is for az:// targets)`, container)
  if ('path' in location) {
    // (A key given without its s3:// would be read as a file of that name.)
    for (const [name, value] of Object.entries({ client, sseCustomerKey }))
      if (value !== undefined) invalidOption(name, `unset for a file (${location.path}); an object is s3://bucket/key or { bucket, key }`, value)
    return fileStore(location)
  }
  if (typeof client?.send !== 'function') invalidOption('client', 'an S3Client, for an S3 (or GCS) target', client)
  const gcs = isGcsClient(client) || (typeof target === 'string' && target.startsWith('gs://'))
  if (gcs && sseCustomerKey !== undefined) invalidOption('sseCustomerKey', 'unset for a GCS object (the XML API takes no S3 customer keys)', sseCustomerKey)
  return objectStore(location, client, gcs ? 'gs' : 's3', sseCustomerKey)
}

function parseTarget(target: string): VerifyLocation {
  const url = /^(s3|gs|az):\/\/([^/]+)\/(.+)$/.exec(target)
  if (url) return url[1] === 'az' ? { container: url[2]!, blob: url[3]! } : { bucket: url[2]!, key: url[3]! }
  // (Not read as a file of that name: a mistyped URL would be reported missing.)
  if (schemeOf(target) !== undefined)
    invalidOption('target', 'a path, s3://bucket/key, gs://bucket/key or az://container/blob', target.replace(/\?.*$/, '?...'))
  return { path: target }
}

function fileStore(location: { path: string }): Store {
  const failed = (path: string) => (error: Error) => {
    throw new ExportError('ERR_SINK', 'sink', `Cannot read ${path}: ${error.message}`, { cause: error })
  }
  return {
    location,
    at: (path) => ({ path }),
    describe: (path) => path,
    read: (path) => readFile(path).catch(failed(path)),
    async stream(path) {
      const fh = await open(path).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined
        return failed(path)(error)
      })
      return fh?.createReadStream()
    },
    keptChecksum: () => Promise.resolve(undefined),
  }
}

function objectStore(location: { bucket: string; key: string }, client: S3ClientLike, scheme: 's3' | 'gs', sseCustomerKey?: Uint8Array | string): Store {
  const describe = (key: string) => `${scheme}://${location.bucket}/${key}`
  const target = (key: string): S3Target => ({
    client,
    bucket: location.bucket,
    key,
    ...(sseCustomerKey !== undefined && { sseCustomerKey: customerKey(sseCustomerKey) }),
  })
  const failed = (key: string) => (error: Error) => {
    throw new ExportError('ERR_SINK', 'sink', `Cannot read ${describe(key)}: ${error.message}`, { cause: error })
  }
  return {
    location,
    at: (key) => ({ bucket: location.bucket, key }),
    describe,
    read: (key) => getObject(target(key)).catch(failed(key)),
    async stream(key) {
      const s3 = loadS3()
      const command = new s3.GetObjectCommand({ ...targetParams(target(key)), Bucket: location.bucket, Key: key })
      const object = await send<{ Body: Readable }>(client, command).catch((error: Error) => {
        if (error.name === 'NoSuchKey') return undefined
        return failed(key)(error)
      })
      return object?.Body
    },
    async keptChecksum(key) {
      if (scheme === 'gs') return undefined // (GCS keeps its CRC32C in x-goog-hash, not in S3's fields)
      const s3 = loadS3()
      const command = new s3.HeadObjectCommand({ ...targetParams(target(key)), Bucket: location.bucket, Key: key, ChecksumMode: 'ENABLED' })
      const head = await send<Record<string, unknown>>(client, command).catch(failed(key))
      if (head.ChecksumType !== 'FULL_OBJECT') return undefined
      for (const algorithm of ['CRC64NVME', 'CRC32C', 'CRC32'] as ChecksumAlgorithm[]) {
        const value = head[checksumField(algorithm)]
        if (typeof value === 'string') return { algorithm, value, bytes: Number(head.ContentLength) }
      }
      return undefined
    },
  }
}

// (Azure keeps a blob's Content-MD5 at most, none of the CRCs an export records: no kept checksum.)
function blobStore(location: BlobRef, container: AzureContainerLike | undefined): Store {
  if (typeof container?.getBlockBlobClient !== 'function')
    invalidOption('container', `a ContainerClient of '@azure/storage-blob' for ${describeLocation(location)}`, container)
  if (container.containerName !== location.container)
    invalidOption('container', `the ContainerClient of '${location.container}' (this one is '${container.containerName}')`, container.containerName)
  const failed = (blob: string) => (error: Error) => {
    throw new ExportError('ERR_SINK', 'sink', `Cannot read az://${location.container}/${blob}: ${error.message}`, { cause: error })
  }
  return {
    location,
    at: (blob) => ({ container: location.container, blob }),
    describe: (blob) => `az://${location.container}/${blob}`,
    read: (blob) => readBlob(container, blob).catch(failed(blob)),
    async stream(blob) {
      const download = await blockBlob(container, blob)
        .download()
        .catch((error: Error) => {
          // (The blob's own 404: a missing container is an error, not a missing part.)
          if ((error as { code?: string }).code === 'BlobNotFound') return undefined
          return failed(blob)(error)
        })
      return download?.readableStreamBody as Readable | undefined
    },
    keptChecksum: () => Promise.resolve(undefined),
  }
}
