import { invalidOption } from '../../core/errors.js'
import { loadOptional } from '../../core/optional.js'
import { checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { COMPRESSION_EXTENSIONS, type CompressionName } from '../../core/types.js'
import { getObjectCommand, type S3ClientLike } from './client.js'

export interface PresignDownloadOptions {
  bucket: string
  key: string
  /** Seconds the URL stays valid. Default 86400 (a day); SigV4 allows at most 604800 (7 days). */
  expiresIn?: number
  /** Makes browsers save the download under this name (`Content-Disposition: attachment`). */
  filename?: string
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

const PRESIGN_DOWNLOAD_OPTION_NAMES = optionNames<PresignDownloadOptions>({ bucket: true, key: true, expiresIn: true, filename: true })

/**
 * A presigned GET URL for an export: the user downloads straight from S3, your API never proxies
 * the bytes. Needs `@aws-sdk/s3-request-presigner`.
 */
export async function presignDownload(client: S3ClientLike, options: PresignDownloadOptions): Promise<string> {
  if (typeof client?.send !== 'function') invalidOption('client', 'an S3Client', client)
  checkObject('options', options, PRESIGN_DOWNLOAD_OPTION_NAMES)
  const { bucket, key, expiresIn = 86_400, filename } = options
  checkString('bucket', bucket)
  checkString('key', key)
  checkPositiveInteger('expiresIn', expiresIn)
  if (expiresIn > 604_800) invalidOption('expiresIn', 'at most 604800 seconds (7 days, the SigV4 limit)', expiresIn)
  if (filename !== undefined) checkString('filename', filename)
  const { getSignedUrl } = loadOptional<typeof import('@aws-sdk/s3-request-presigner')>('@aws-sdk/s3-request-presigner', '@aws-sdk/s3-request-presigner')
  const command = getObjectCommand(bucket, key, filename === undefined ? undefined : attachment(filename))
  return getSignedUrl(client as never, command as never, { expiresIn })
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
