// verifyExport(): reads back what an export stored and compares it with what was recorded of it,
// byte for byte: a manifest's parts (size, SHA-256, full checksum), or one file, object or blob
// against the checksum its export returned (or, for S3, the one the store keeps). The stores are
// in stores.ts.
import { createHash } from 'node:crypto'
import { dirname, join } from 'node:path'
import { CHECKSUM_ALGORITHMS, Checksummer } from '../core/checksum.js'
import { ExportError, invalidOption } from '../core/errors.js'
import { checkObject, optionNames } from '../core/options.js'
import type { PartInfo } from '../core/types.js'
import { parseManifest } from '../parts/manifest.js'
import type { AzureContainerLike } from '../sinks/azure/client.js'
import type { S3ClientLike } from '../sinks/s3/client.js'
import { rowCounter, type RowCounter } from './row-count.js'
import { nameIn, storeOf, type ExpectedChecksum, type Store, type VerifyLocation } from './stores.js'

export { describeLocation, type BlobRef, type ExpectedChecksum, type VerifyLocation } from './stores.js'

export interface VerifyOptions {
  /**
   * What to verify: a manifest (a name ending in `.manifest.json`: every part it lists), or one
   * file, object or blob. A path, `s3://bucket/key` (with `client`), `az://container/blob` (with
   * `container`), or a location (`{ path }`, `{ bucket, key }`, `{ container, blob }`).
   */
  target: string | VerifyLocation
  /** An S3Client, for S3 (and GCS) targets. */
  client?: S3ClientLike
  /** The ContainerClient of an Azure target's container. */
  container?: AzureContainerLike
  /**
   * The checksum the file, object or blob must have: the `checksum` of its ExportResult. Default:
   * for an S3 object, the full-object checksum the store keeps (none kept: refused, nothing to
   * compare); files and Azure blobs need it (Azure keeps no full-object CRC).
   */
  expected?: ExpectedChecksum
  /** SSE-C objects: their key. */
  sseCustomerKey?: Uint8Array | string
}

export interface VerifiedObject {
  location: VerifyLocation
  /** Bytes read. */
  bytes: number
  /** Rows counted in them, where the format allows it exactly (CSV and JSON Lines, plain, gzip or zstd). */
  rows?: number
  ok: boolean
  /** What differs, one line each (`bytes: 1024 stored, 1000 recorded`). */
  problems: string[]
}

export interface VerifyResult {
  /** Every file or object is as recorded (and a manifest agrees with itself). */
  ok: boolean
  /** Each file or object read, in the manifest's order. */
  objects: VerifiedObject[]
  /** What is wrong with a manifest itself: its totals against its parts' (`rows: the parts hold 600, the manifest says 1000`). */
  problems?: string[]
}

const VERIFY_OPTION_NAMES = optionNames<VerifyOptions>({ target: true, client: true, container: true, expected: true, sseCustomerKey: true })

/**
 * Recomputes the checksums of an export's files or objects from their stored bytes and compares
 * them with the manifest's, or with `expected`. A file or object that cannot be read is ERR_SINK.
 */
export async function verifyExport(options: VerifyOptions): Promise<VerifyResult> {
  checkObject('options', options, VERIFY_OPTION_NAMES)
  const store = storeOf(options)
  const location = store.location
  const name = nameIn(location)
  if (name.endsWith('.manifest.json')) {
    if (options.expected !== undefined) invalidOption('expected', 'unset for a manifest (each part is checked against its own)', options.expected)
    const bytes = await store.read(name)
    if (bytes === undefined) throw new ExportError('ERR_SINK', 'sink', `No manifest at ${store.describe(name)}`)
    const manifest = parseManifest(bytes, store.describe(name))
    const objects: VerifiedObject[] = []
    // Parts are named from the manifest's folder (a partitioned export's from there too).
    const folder = 'path' in location ? dirname(name) : name.slice(0, name.lastIndexOf('/') + 1)
    const parts = manifest.parts as Array<PartInfo<object>>
    for (const part of parts) {
      const at = 'path' in location ? join(folder, part.name) : `${folder}${part.name}`
      const object = await check(store, at, part, () => rowCounter(manifest))
      // (A part with neither would be checked on its size alone.)
      if (part.sha256 === undefined && part.checksum === undefined) object.problems.push('unchecked: the manifest records no sha256 or checksum of it')
      objects.push({ ...object, ok: object.problems.length === 0 })
    }
    // A manifest that lists fewer parts than it counts (parts dropped from it) is not the export it says.
    const problems: string[] = []
    for (const total of ['rows', 'bytes'] as const) {
      const listed = parts.reduce((sum, part) => sum + (typeof part[total] === 'number' ? part[total] : NaN), 0)
      if (typeof manifest[total] === 'number' && listed !== manifest[total])
        problems.push(`${total}: the parts hold ${listed}, the manifest says ${manifest[total]}`)
    }
    return { ok: problems.length === 0 && objects.every((object) => object.ok), objects, ...(problems.length > 0 && { problems }) }
  }
  if (options.expected !== undefined) checkChecksum(options.expected)
  const expected = options.expected ?? (await store.keptChecksum(name))
  if (expected === undefined)
    invalidOption('expected', `the checksum ${store.describe(name)} must have (its export's result.checksum): the store keeps none`, expected)
  const object = await check(store, name, { bytes: expected.bytes, checksum: expected })
  return { ok: object.ok, objects: [object] }
}

function checkChecksum(expected: ExpectedChecksum): void {
  checkObject('expected', expected)
  if (!CHECKSUM_ALGORITHMS.includes(expected.algorithm)) invalidOption('expected.algorithm', CHECKSUM_ALGORITHMS.join(', '), expected.algorithm)
  // (A value that could never match is a mistake in the input, not a difference in the data.)
  const bytes = expected.algorithm === 'CRC64NVME' ? 8 : 4
  if (typeof expected.value !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(expected.value) || Buffer.from(expected.value, 'base64').length !== bytes)
    invalidOption('expected.value', `the ${expected.algorithm.toLowerCase()} checksum, ${bytes} bytes in base64`, expected.value)
}

// Reads one file or object whole and compares it with what was recorded of it.
async function check(
  store: Store,
  name: string,
  recorded: { bytes?: number; sha256?: string; checksum?: ExpectedChecksum; rows?: number },
  counting?: () => RowCounter | undefined,
): Promise<VerifiedObject> {
  const sha256 = createHash('sha256')
  const sum = recorded.checksum && new Checksummer(recorded.checksum.algorithm)
  let bytes = 0
  const stream = await store.stream(name)
  if (!stream) return { location: store.at(name), bytes, ok: false, problems: ['missing: nothing is stored there'] }
  const counter = counting?.()
  try {
    for await (const chunk of stream) {
      sha256.update(chunk as Buffer)
      sum?.update(chunk as Buffer)
      bytes += (chunk as Buffer).length
      await counter?.write(chunk as Buffer)
    }
  } catch (error) {
    // A read that fails part-way (the store's, not the counter's): unreadable, not different.
    if (!stream.errored) throw error
    throw new ExportError('ERR_SINK', 'sink', `Cannot read ${store.describe(name)}: ${(error as Error).message}`, { cause: error })
  }
  const problems: string[] = []
  if (recorded.bytes !== undefined && bytes !== recorded.bytes) problems.push(`bytes: ${bytes} stored, ${recorded.bytes} recorded`)
  const hex = sha256.digest('hex')
  if (recorded.sha256 !== undefined && hex !== recorded.sha256) problems.push(`sha256: ${hex} stored, ${recorded.sha256} recorded`)
  if (sum && recorded.checksum) {
    const { algorithm, value } = await sum.digest()
    if (value !== recorded.checksum.value) problems.push(`${algorithm.toLowerCase()}: ${value} stored, ${recorded.checksum.value} recorded`)
  }
  const rows = await counter?.rows().catch((error: Error) => {
    problems.push(`rows: the bytes cannot be read back (${error.message})`)
    return undefined
  })
  if (rows !== undefined && recorded.rows !== undefined && rows !== recorded.rows) problems.push(`rows: ${rows} stored, ${recorded.rows} recorded`)
  return { location: store.at(name), bytes, ...(rows !== undefined && { rows }), ok: problems.length === 0, problems }
}
