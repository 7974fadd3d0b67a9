import type { Transform } from 'node:stream'
import * as zlib from 'node:zlib'
import { ExportError, invalidOption } from '../core/errors.js'
import { checkObject, optionNames } from '../core/options.js'
import { COMPRESSION_CONTENT_TYPES } from '../core/types.js'

export interface ZstdOptions {
  /**
   * Compression level 1-19 (the `zstd` command's range; 20-22 take much more memory and time).
   * Default 3, the `zstd` command's default.
   */
  level?: number
}

/** The Content-Type of a zstd-compressed export: a .zst file (not Content-Encoding, which clients decode). */
export const ZSTD_CONTENT_TYPE = COMPRESSION_CONTENT_TYPES.zstd

/** A zstd stage: a Transform that also tells how many input bytes it has compressed. */
export type ZstdStage = Transform & { readonly bytesWritten: number }

const ZSTD_OPTION_NAMES = optionNames<ZstdOptions>({ level: true })

/** Checks zstd options and applies the defaults, without building a stream. */
export function normalizeZstdOptions(options: ZstdOptions = {}): Readonly<Required<ZstdOptions>> {
  checkObject('options', options, ZSTD_OPTION_NAMES)
  const { level = 3 } = options
  if (!Number.isInteger(level) || level < 1 || level > 22) invalidOption('level', 'an integer from 1 to 22', level)
  return Object.freeze({ level })
}

// node:zlib has zstd from Node 22.15 (and 23.8); the package runs on any Node 22.
type ZstdFactory = (options: { params: Record<number, number>; chunkSize: number }) => ZstdStage
const createZstdCompress = (zlib as unknown as { createZstdCompress?: ZstdFactory }).createZstdCompress
const constants = zlib.constants as unknown as Record<string, number>

/**
 * Zstandard stage: bytes in, one zstd frame out, with its content checksum (as the `zstd` command
 * writes it), readable by `zstd -d`, `zstdcat` and `zlib.createZstdDecompress()`. Node's zstd runs
 * on libuv's thread pool, off the main thread, on one thread: libzstd's own worker threads are not
 * offered, as Node's stream loses output with them (seen on Node 22.23: `push() after EOF`).
 * Needs Node >= 22.15; an older Node gets ERR_INVALID_OPTION.
 */
export function zstd(options: ZstdOptions = {}): ZstdStage {
  const { level } = normalizeZstdOptions(options)
  if (createZstdCompress === undefined) {
    throw new ExportError('ERR_INVALID_OPTION', 'options', `zstd compression needs Node >= 22.15 (node:zlib has none in ${process.version}); use gzip`)
  }
  return createZstdCompress({
    params: { [constants.ZSTD_c_compressionLevel!]: level, [constants.ZSTD_c_checksumFlag!]: 1 },
    chunkSize: 64 * 1024,
  })
}
