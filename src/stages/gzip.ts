import { createGzip, constants, type Gzip } from 'node:zlib'
import { invalidOption } from '../errors.js'
import { checkObject } from '../options.js'

export interface GzipOptions {
  /** Compression level 0-9. Default 6 (the `gzip` command's default). Memory: ~300 KiB per stage whatever the level. */
  level?: number
}

/**
 * Gzip stage: bytes in, one gzip member out (a valid empty member for empty input).
 * Feed it large chunks: the format stages emit ~64 KiB chunks, since per-row chunks make zlib 5-8x slower.
 */
export function gzip(options: GzipOptions = {}): Gzip {
  checkObject('options', options)
  const { level = 6 } = options
  if (!Number.isInteger(level) || level < 0 || level > 9) invalidOption('level', 'an integer from 0 to 9', level)
  return createGzip({ level, chunkSize: 64 * 1024, flush: constants.Z_NO_FLUSH })
}
