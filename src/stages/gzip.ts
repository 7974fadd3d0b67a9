import { availableParallelism } from 'node:os'
import { Transform } from 'node:stream'
import { createGzip } from 'node:zlib'
import { BlockDeflater } from './deflate-blocks.js'
import { invalidOption } from '../core/errors.js'
import { COMPRESSION_CONTENT_TYPES } from '../core/types.js'
import { checkObject, checkPositiveInteger, optionNames } from '../core/options.js'

export interface GzipOptions {
  /** Compression level 0-9. Default 6 (the `gzip` command's default). */
  level?: number
  /**
   * Blocks compressed at once on libuv's thread pool. Default: `os.availableParallelism()`;
   * 1 is zlib's own single-threaded Gzip stream. Memory: up to threads x 2 blocks of 256 KiB
   * in flight (plus their output), ~300 KiB of zlib state for one thread.
   */
  threads?: number
}

/** The Content-Type of a gzipped export: a .gz file (not Content-Encoding, which clients decode). */
export const GZIP_CONTENT_TYPE = COMPRESSION_CONTENT_TYPES.gzip

export { BLOCK_SIZE } from './deflate-blocks.js'

/** A gzip stage: a Transform that also tells how many input bytes it has compressed and handed on. */
export type GzipStage = Transform & {
  /** Input bytes whose compressed output has been pushed (zlib's own count for one thread). */
  readonly bytesWritten: number
}

/**
 * Gzip stage: bytes in, one standard gzip member out (a valid empty member for empty input).
 * With more than one thread it compresses blocks in parallel the way pigz does (src/stages/deflate-blocks.ts),
 * the outputs written in order between one gzip header and one CRC-32/size trailer.
 * Every gzip reader reads the result; it is within ~0.1% of single-threaded gzip's size.
 */
export function gzip(options: GzipOptions = {}): GzipStage {
  const { level, threads } = normalizeGzipOptions(options)
  if (threads === 1) return createGzip({ level, chunkSize: 64 * 1024 })
  return new ParallelGzip(level, threads)
}

const GZIP_OPTION_NAMES = optionNames<GzipOptions>({ level: true, threads: true })

/** Checks gzip options and applies the defaults, without building a stream. */
export function normalizeGzipOptions(options: GzipOptions = {}): Readonly<Required<GzipOptions>> {
  checkObject('options', options, GZIP_OPTION_NAMES)
  const { level = 6, threads = availableParallelism() } = options
  if (!Number.isInteger(level) || level < 0 || level > 9) invalidOption('level', 'an integer from 0 to 9', level)
  checkPositiveInteger('threads', threads)
  return Object.freeze({ level, threads })
}

/**
 * A parallel gzip stage whose thread count can change before or while it runs (even from 1): the
 * pipeline gives it every core once the source encodes rows itself and leaves the main thread idle.
 */
export function adjustableGzip(level: number, threads: number): GzipStage {
  const stage = new ParallelGzip(level, threads)
  adjustable.add(stage)
  return stage
}
const adjustable = new WeakSet<ParallelGzip>()

/** Gives a stage made by `adjustableGzip` `threads` threads; any other stage keeps its own. */
export function growGzip(stage: unknown, threads: number): void {
  if (adjustable.has(stage as ParallelGzip)) (stage as ParallelGzip).threads = threads
}

/** The multi-threaded gzip stage (see `gzip`): block deflate between a gzip header and trailer. */
class ParallelGzip extends Transform {
  readonly #level: number
  readonly #deflater: BlockDeflater
  #started = false
  #bytesWritten = 0

  constructor(level: number, threads: number) {
    super()
    this.#level = level
    this.#deflater = new BlockDeflater(level, threads, (output, input) => {
      this.#bytesWritten += input
      this.push(output)
    })
  }

  set threads(threads: number) {
    this.#deflater.threads = threads
  }

  get bytesWritten(): number {
    return this.#bytesWritten
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.#started) this.#header()
    if (this.#deflater.write(chunk)) return callback()
    this.#deflater.drain().then(() => callback(), callback)
  }

  override _flush(callback: (error?: Error | null) => void): void {
    this.#end().then(() => callback(), callback)
  }

  #header(): void {
    this.#started = true
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=unix (as `gzip -n`)
    this.push(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, this.#level === 9 ? 2 : this.#level === 1 ? 4 : 0, 3]))
  }

  // The last (possibly short) block, every block still in flight, then the trailer.
  async #end(): Promise<void> {
    if (!this.#started) this.#header()
    await this.#deflater.end()
    const trailer = Buffer.alloc(8)
    trailer.writeUInt32LE(this.#deflater.crc, 0)
    trailer.writeUInt32LE(this.#deflater.size % 2 ** 32, 4)
    this.push(trailer)
  }
}
