// Raw deflate in blocks compressed in parallel on libuv's thread pool, the way pigz does: each
// block is deflated with the previous 32 KiB of input as its dictionary and ends on a sync flush
// (the last one finishes the stream), and the outputs are handed on in input order. Together they
// are one deflate stream any inflater reads, within ~0.1% of a single-threaded one's size. The
// gzip stage wraps it in a gzip header and trailer; the XLSX format's ZIP writer in ZIP entries.
import { promisify } from 'node:util'
import { constants, crc32, deflateRaw } from 'node:zlib'

/** Input bytes per deflate call: large enough that the per-block flush costs < 0.1% in size. */
export const BLOCK_SIZE = 256 * 1024
const WINDOW = 32 * 1024
const deflateRawAsync = promisify(deflateRaw)

/**
 * Deflates what it is given in parallel blocks; `out` gets each block's output, in order, with the
 * count of input bytes it holds. At most `threads` x 2 blocks are in flight.
 */
export class BlockDeflater {
  readonly #level: number
  #threads: number
  readonly #out: (output: Buffer, inputBytes: number) => void
  #pending: Buffer[] = []
  #pendingBytes = 0
  #dictionary: Buffer = Buffer.alloc(0)
  #crc = 0
  #size = 0
  #inFlightBytes = 0
  // Compressed blocks in input order, with their input sizes.
  readonly #inFlight: Array<{ output: Promise<Buffer>; input: number }> = []

  constructor(level: number, threads: number, out: (output: Buffer, inputBytes: number) => void) {
    this.#level = level
    this.#threads = threads
    this.#out = out
  }

  /** Blocks compressed at once; may change while it runs (the export learns its source encodes rows itself). */
  set threads(threads: number) {
    this.#threads = threads
  }

  /** CRC-32 of the input so far. */
  get crc(): number {
    return this.#crc >>> 0
  }

  /** Input bytes taken so far. */
  get size(): number {
    return this.#size
  }

  /** Input bytes taken whose output has not been handed on yet. */
  get pendingBytes(): number {
    return this.#pendingBytes + this.#inFlightBytes
  }

  /** Takes bytes: whole blocks go to the pool. False when the pool is full: await `drain()` before more. */
  write(chunk: Buffer): boolean {
    this.#pending.push(chunk)
    this.#pendingBytes += chunk.length
    while (this.#pendingBytes >= BLOCK_SIZE) this.#submit(this.#takeBlock(BLOCK_SIZE), false)
    return this.#inFlight.length < this.#threads * 2
  }

  /** Hands on the oldest blocks' output until the pool has room again. */
  async drain(): Promise<void> {
    while (this.#inFlight.length >= this.#threads * 2) await this.#handOnOldest()
  }

  /** Deflates the rest (the last block finishes the deflate stream) and hands on every output. */
  async end(): Promise<void> {
    this.#submit(this.#takeBlock(this.#pendingBytes), true)
    while (this.#inFlight.length > 0) await this.#handOnOldest()
  }

  #submit(block: Buffer, final: boolean): void {
    // Skipped for an empty block: Node 20's zlib.crc32 returns 0 for some empty views.
    if (block.length > 0) this.#crc = crc32(block, this.#crc)
    this.#size += block.length
    const dictionary = this.#dictionary
    const options = { level: this.#level, finishFlush: final ? constants.Z_FINISH : constants.Z_SYNC_FLUSH, ...(dictionary.length ? { dictionary } : {}) }
    const output = deflateRawAsync(block, options)
    output.catch(() => {}) // awaited in order by #handOnOldest; a failure is reported there
    this.#inFlight.push({ output, input: block.length })
    this.#inFlightBytes += block.length
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

  async #handOnOldest(): Promise<void> {
    const { output, input } = this.#inFlight[0]!
    const bytes = await output
    this.#inFlight.shift()
    this.#inFlightBytes -= input
    this.#out(bytes, input)
  }
}
