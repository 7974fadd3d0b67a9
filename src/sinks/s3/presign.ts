import { createHash } from 'node:crypto'
import { invalidOption } from '../../core/errors.js'
import { loadOptional } from '../../core/optional.js'
import { checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { COMPRESSION_EXTENSIONS, type CompressionName } from '../../core/types.js'
import { loadS3, type S3ClientLike } from './client.js'
import { customerKey } from './options.js'

export interface PresignDownloadOptions {
  bucket: string
  key: string
  /** Seconds the URL stays valid. Default 86400 (a day); SigV4 allows at most 604800 (7 days). */
  expiresIn?: number
  /** Makes browsers save the download under this name (`Content-Disposition: attachment`). */
  filename?: string
  /**
   * SSE-C: the object's key. It is signed into the link but cannot travel in it: whoever
   * downloads must send `sseCustomerHeaders(key)` with the GET (a browser link alone cannot).
   */
  sseCustomerKey?: Uint8Array | string
}

const SSE_C = 'x-amz-server-side-encryption-customer'

/** SigV4's longest presigned URL: 7 days. */
export const MAX_PRESIGN_SECONDS = 604_800

/** The headers a GET of an SSE-C object must carry (a presigned link's too): the algorithm, the key and its MD5, base64. */
export function sseCustomerHeaders(key: Uint8Array | string): Record<string, string> {
  const bytes = customerKey(key)
  return {
    [`${SSE_C}-algorithm`]: 'AES256',
    [`${SSE_C}-key`]: Buffer.from(bytes).toString('base64'),
    [`${SSE_C}-key-md5`]: createHash('md5').update(bytes).digest('base64'),
  }
}

/**
 * `Content-Disposition: attachment` for a file name, RFC 6266: an ASCII `filename` fallback
 * and, for other names, `filename*` in RFC 5987 encoding.
 */
export function attachment(filename: string): string {
  checkString('filename', filename)
  const fallback = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_')
  if (fallback === filename) return `attachment; filename="${filename}"`
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`
}

const PRESIGN_DOWNLOAD_OPTION_NAMES = optionNames<PresignDownloadOptions>({ bucket: true, key: true, expiresIn: true, filename: true, sseCustomerKey: true })

/**
 * A presigned GET URL for an export: the user downloads straight from S3, your API never proxies
 * the bytes. Needs `@aws-sdk/s3-request-presigner`.
 */
export async function presignDownload(client: S3ClientLike, options: PresignDownloadOptions): Promise<string> {
  if (typeof client?.send !== 'function') invalidOption('client', 'an S3Client', client)
  checkObject('options', options, PRESIGN_DOWNLOAD_OPTION_NAMES)
  const { bucket, key, expiresIn = 86_400, filename, sseCustomerKey } = options
  checkString('bucket', bucket)
  checkString('key', key)
  checkPositiveInteger('expiresIn', expiresIn)
  if (expiresIn > MAX_PRESIGN_SECONDS) invalidOption('expiresIn', 'at most 604800 seconds (7 days, the SigV4 limit)', expiresIn)
  if (filename !== undefined) checkString('filename', filename)
  const { getSignedUrl } = loadOptional<typeof import('@aws-sdk/s3-request-presigner')>('@aws-sdk/s3-request-presigner', '@aws-sdk/s3-request-presigner')
  const ssec = sseCustomerKey === undefined ? undefined : customerKey(sseCustomerKey)
  const ResponseContentDisposition = filename === undefined ? undefined : attachment(filename)
  const s3 = loadS3()
  const command = new s3.GetObjectCommand({
    Bucket: bucket,
    Key: key,
    ResponseContentDisposition,
    ...(ssec && { SSECustomerAlgorithm: 'AES256', SSECustomerKey: Buffer.from(ssec).toString('base64') }),
  })
  // SSE-C headers stay headers (S3 takes the key in no query string): signed, sent by the downloader.
  const unhoistableHeaders = ssec && new Set(Object.keys(sseCustomerHeaders(ssec)))
  return getSignedUrl(client as never, command as never, { expiresIn, ...(unhoistableHeaders && { unhoistableHeaders }) })
}

export interface ExportKeyOptions {
  /** Folder of the key. Default `exports`. */
  prefix?: string
  /** A stable id of the export job: a retry writes the same key and overwrites its own object. */
  jobId: string
  /** A format stage (its extension is used) or an extension such as `csv`. */
  format: { extension: string } | string
  gzip?: boolean
  /** `'zstd'`: a `.zst` key (`'gzip'`: `.gz`, as `gzip: true`). */
  compression?: CompressionName
}

const EXPORT_KEY_OPTION_NAMES = optionNames<ExportKeyOptions>({ prefix: true, jobId: true, format: true, gzip: true, compression: true })

/** A stable object key per job: `exportKey({ jobId: '42', format: csv(), gzip: true })` -> `exports/42.csv.gz`. */
export function exportKey(options: ExportKeyOptions): string {
  checkObject('options', options, EXPORT_KEY_OPTION_NAMES)
  const { prefix = 'exports', jobId, format, gzip = false, compression = gzip ? 'gzip' : undefined } = options
  checkString('jobId', jobId)
  if (/[/\\]|^\.\.?$/.test(jobId)) invalidOption('jobId', 'an id without slashes', jobId)
  const extension = typeof format === 'string' ? format : format?.extension
  checkString('format', extension)
  return `${prefix ? `${prefix.replace(/\/+$/, '')}/` : ''}${jobId}.${extension}${compression === undefined ? '' : COMPRESSION_EXTENSIONS[compression]}`
}
