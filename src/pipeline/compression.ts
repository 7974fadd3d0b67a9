// Which compression an export runs, settled from its `gzip` and `compression` options before any
// data flows: the stage (one per part for an export in parts), its name for the manifest and the
// stage of an error, and the Content-Type of the output.
import { availableParallelism } from 'node:os'
import { Readable, Writable, type Transform } from 'node:stream'
import { invalidOption } from '../core/errors.js'
import { checkObject } from '../core/options.js'
import type { CompressionName } from '../core/types.js'
import { adjustableGzip, GZIP_CONTENT_TYPE, gzip as gzipStage, normalizeGzipOptions, type GzipOptions } from '../stages/gzip.js'
import { normalizeZstdOptions, zstd, ZSTD_CONTENT_TYPE, type ZstdOptions } from '../stages/zstd.js'

/**
 * The `compression` option: `'gzip'` (level 6, on every core; as `gzip: true`), `'zstd'` (level 3),
 * or either with its options: `{ type: 'zstd', level: 9 }`, `{ type: 'gzip', level: 9, threads: 2 }`.
 */
export type CompressionOption = CompressionName | ({ type: 'gzip' } & GzipOptions) | ({ type: 'zstd' } & ZstdOptions)

/** An export's compression: its first stage, made now (a bad option fails here), and how to make more. */
export interface Compression {
  readonly name: CompressionName
  /** How it is stored: `application/gzip`, `application/zstd` (a file, not a Content-Encoding). */
  readonly contentType: string
  /** The stage of the export, or of its first part. */
  readonly stage: Transform
  /** A new stage alike, for the next part; undefined when the caller gave the stage itself. */
  readonly next: (() => Transform) | undefined
}

interface CompressionInput {
  gzip?: boolean | GzipOptions | Transform
  compression?: CompressionOption
}

/**
 * The compression of an export, or none. `bytesOnly`: the source emits formatted bytes (COPY), so
 * compression may take every core; `mayEncode`: the source may start encoding rows itself, and a
 * gzip stage that can grow onto every core then is made (see `encodeFor`).
 */
export function compressionOf(options: CompressionInput, bytesOnly: boolean, mayEncode: boolean): Compression | undefined {
  const { gzip: gzipOption, compression: option } = options
  if (option !== undefined) {
    if (gzipOption !== undefined && gzipOption !== false) invalidOption('compression', 'unset when `gzip` is set (they say the same thing)', option)
    const { type, ...settings } = typeof option === 'string' ? { type: option } : (checkedObject(option) as { type: unknown })
    if (type === 'gzip') return gzipCompression(settings, bytesOnly, mayEncode)
    if (type === 'zstd') return zstdCompression(settings)
    invalidOption(typeof option === 'string' ? 'compression' : 'compression.type', "'gzip' or 'zstd'", type)
  }
  if (gzipOption === undefined || gzipOption === false) return undefined
  if (gzipOption instanceof Readable && gzipOption instanceof Writable) {
    return { name: 'gzip', contentType: GZIP_CONTENT_TYPE, stage: gzipOption, next: undefined }
  }
  if (gzipOption !== true && (typeof gzipOption !== 'object' || gzipOption === null || Array.isArray(gzipOption))) {
    invalidOption('gzip', 'a boolean, gzip options ({ level, threads }) or a compression Transform', gzipOption)
  }
  return gzipCompression(gzipOption === true ? {} : gzipOption, bytesOnly, mayEncode)
}

function checkedObject(option: unknown): object {
  checkObject('compression', option)
  return option as object
}

function gzipCompression(chosen: GzipOptions, bytesOnly: boolean, mayEncode: boolean): Compression {
  // Encoding rows takes the main thread's core: compressing on every core would take CPU from it
  // (measured on 2 cores: 30% slower), so row exports leave it one; a byte source needs none.
  // A source that encodes rows itself (see encodeFor) leaves the main thread idle: its stage can
  // take every core once it does, unless the caller chose the thread count.
  const { level, threads } = normalizeGzipOptions({ threads: bytesOnly ? availableParallelism() : Math.max(1, availableParallelism() - 1), ...chosen })
  const stage = mayEncode && chosen.threads === undefined ? adjustableGzip(level, threads) : gzipStage({ level, threads })
  return { name: 'gzip', contentType: GZIP_CONTENT_TYPE, stage, next: () => gzipStage({ level, threads }) }
}

function zstdCompression(chosen: ZstdOptions): Compression {
  const settings = normalizeZstdOptions(chosen)
  return { name: 'zstd', contentType: ZSTD_CONTENT_TYPE, stage: zstd(settings), next: () => zstd(settings) }
}
