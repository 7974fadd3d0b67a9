import { availableParallelism } from 'node:os'
import { Transform } from 'node:stream'
import { promisify } from 'node:util'
import { constants, crc32, createGzip, deflateRaw } from 'node:zlib'
import { invalidOption } from '../errors.js'
import { checkObject, checkPositiveInteger } from '../options.js'

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
export const GZIP_CONTENT_TYPE = 'application/gzip'

/** Input block per deflate call: large enough that the per-block flush costs < 0.1% in size. */
export const BLOCK_SIZE = 256 * 1024
const WINDOW = 32 * 1024
const deflateRawAsync = promisify(deflateRaw)

/** A gzip stage: a Transform that also tells how many input bytes it has compressed and handed on. */
export type GzipStage = Transform & {
  /** Input bytes whose compressed output has been pushed (zlib's own count for one thread). */
  readonly bytesWritten: number
}

/**
 * Gzip stage: bytes in, one standard gzip member out (a valid empty member for empty input).
 * With more than one thread it compresses blocks in parallel the way pigz does: each block is
 * raw-deflated with the previous 32 KiB as its dictionary and ends on a sync flush (the last on
 * finish), the outputs are written in order between one gzip header and one CRC-32/size trailer.
 * Every gzip reader reads the result; it is within ~0.1% of single-threaded gzip's size.
 */
export function gzip(options: GzipOptions = {}): GzipStage {
  checkObject('options', options)
  const { level = 6, threads = availableParallelism() } = options
  if (!Number.isInteger(level) || level < 0 || level > 9) invalidOption('level', 'an integer from 0 to 9', level)
  checkPositiveInteger('threads', threads)
  if (threads === 1) return createGzip({ level, chunkSize: 64 * 1024 })
  return new ParallelGzip(level, threads)
}

/** The multi-threaded gzip stage (see `gzip`). */
class ParallelGzip extends Transform {
  readonly #level: number
  readonly #threads: number
  #pending: Buffer[] = []
  #pendingBytes = 0
  #dictionary: Buffer = Buffer.alloc(0)
  #crc = 0
  #size = 0
  #started = false
  #bytesWritten = 0
  // Compressed blocks in input order, with their input sizes; at most threads x 2 at once.
  readonly #inFlight: Array<{ output: Promise<Buffer>; input: number }> = []

  constructor(level: number, threads: number) {
    super()
    this.#level = level
    this.#threads = threads
  }

  get bytesWritten(): number {
    return this.#bytesWritten
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#write(chunk).then(() => callback(), callback)
  }

  override _flush(callback: (error?: Error | null) => void): void {
    this.#end().then(() => callback(), callback)
  }

  #submit(block: Buffer, final: boolean): void {
    // Skipped for an empty block: Node 20's zlib.crc32 returns 0 for some empty views.
    if (block.length > 0) this.#crc = crc32(block, this.#crc)
    this.#size = (this.#size + block.length) % 2 ** 32
    const dictionary = this.#dictionary
    const options = { level: this.#level, finishFlush: final ? constants.Z_FINISH : constants.Z_SYNC_FLUSH, ...(dictionary.length ? { dictionary } : {}) }
    this.#inFlight.push({ output: deflateRawAsync(block, options), input: block.length })
    // The next block may refer back to the last 32 KiB of input, as in one continuous stream.
    this.#dictionary = block.length >= WINDOW ? block.subarray(block.length - WINDOW) : Buffer.concat([dictionary, block]).subarray(-WINDOW)
  }

  #takeBlock(length: number): Buffer {
    const all = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes)
    const block = all.subarray(0, length)
    const rest = all.subarray(length)
    this.#pending = rest.length ? [rest] : []
    this.#pendingBytes = rest.length
    return block
  }

  #header(): void {
    this.#started = true
    // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=unix (as `gzip -n`)
    this.push(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, this.#level === 9 ? 2 : this.#level === 1 ? 4 : 0, 3]))
  }

  async #pushOldest(): Promise<void> {
    const { output, input } = this.#inFlight.shift()!
    const bytes = await output
    this.#bytesWritten += input
    this.push(bytes)
  }

  // Takes a chunk: whole blocks go to the pool; waits for the oldest block while the pool is full.
  async #write(chunk: Buffer): Promise<void> {
    if (!this.#started) this.#header()
    this.#pending.push(chunk)
    this.#pendingBytes += chunk.length
    while (this.#pendingBytes >= BLOCK_SIZE) this.#submit(this.#takeBlock(BLOCK_SIZE), false)
    while (this.#inFlight.length >= this.#threads * 2) await this.#pushOldest()
  }

  // The last (possibly short) block, every block still in flight, then the trailer.
  async #end(): Promise<void> {
    if (!this.#started) this.#header()
    this.#submit(this.#takeBlock(this.#pendingBytes), true)
    while (this.#inFlight.length > 0) await this.#pushOldest()
    const trailer = Buffer.alloc(8)
    trailer.writeUInt32LE(this.#crc >>> 0, 0)
    trailer.writeUInt32LE(this.#size, 4)
    this.push(trailer)
  }
}
