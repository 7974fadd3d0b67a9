// Reading zstd input frame by frame. A .zst file may hold several frames one after another (a
// resumable upload's parts, `cat a.zst b.zst`, pzstd), and Node 22's zstd decoder ends after the
// first, dropping the rest without an error. So the frames are found here, from their headers
// (RFC 8878, section 3.1), and each gets its own decoder: the output is every frame's, in order.
import { Readable, type Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import * as zlib from 'node:zlib'
import { ExportError } from './errors.js'

const ZSTD_MAGIC = 0xfd2fb528
const isSkippable = (magic: number) => magic >>> 4 === 0x184d2a5

/** Finds where each frame ends in a stream of zstd bytes, reading only frame and block headers. */
export class FrameScanner {
  #header: number[] = [] // bytes of the header being read
  #need = 4 // bytes the header being read has
  #step: 'magic' | 'descriptor' | 'skippable' | 'block' = 'magic'
  #skip = 0 // bytes to pass over (frame header fields, block contents, a checksum, a skippable frame)
  #checksum = 0
  #last = false
  #started = false

  /** Whether the bytes so far end inside a frame (a truncated input, once there are no more). */
  get inFrame(): boolean {
    return this.#started
  }

  /** The offset in `chunk` where the current frame ends, or -1 when it goes on past the chunk. */
  scan(chunk: Uint8Array): number {
    let at = 0
    while (at < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - at)
        this.#skip -= n
        at += n
        if (this.#skip === 0 && this.#frameEnded()) return at
        continue
      }
      this.#started = true
      this.#header.push(chunk[at++]!)
      if (this.#header.length < this.#need) continue
      const header = Buffer.from(this.#header)
      this.#header = []
      if (this.#read(header) && this.#skip === 0 && this.#frameEnded()) return at
    }
    return -1
  }

  // A complete header: what comes after it. True when it leaves nothing but skipped bytes to the frame's end.
  #read(header: Buffer): boolean {
    if (this.#step === 'magic') {
      const magic = header.readUInt32LE(0)
      if (magic === ZSTD_MAGIC) [this.#step, this.#need] = ['descriptor', 1]
      else if (isSkippable(magic)) [this.#step, this.#need] = ['skippable', 4]
      else throw new ExportError('ERR_SOURCE', 'source', `Not a zstd frame: magic number 0x${magic.toString(16)}`)
      return false
    }
    if (this.#step === 'skippable') {
      this.#skip = header.readUInt32LE(0)
      this.#last = true
      return true
    }
    if (this.#step === 'descriptor') {
      const descriptor = header[0]!
      const singleSegment = (descriptor >> 5) & 1
      this.#checksum = (descriptor >> 2) & 1 ? 4 : 0
      // Window descriptor, dictionary id and frame content size: passed over.
      this.#skip = (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]! + [singleSegment, 2, 4, 8][descriptor >> 6]!
      ;[this.#step, this.#need, this.#last] = ['block', 3, false]
      return false
    }
    const block = header.readUIntLE(0, 3)
    const type = (block >> 1) & 3
    if (type === 3) throw new ExportError('ERR_SOURCE', 'source', 'A zstd block of the reserved type: the input is corrupt')
    this.#last = (block & 1) === 1
    this.#skip = type === 1 ? 1 : block >>> 3 // an RLE block holds one byte
    if (this.#last) this.#skip += this.#checksum
    return this.#last
  }

  // After a block's content (or a skipped frame): the frame's end when it was the last block.
  #frameEnded(): boolean {
    if (this.#step === 'descriptor' || this.#step === 'magic' || !this.#last) return false
    ;[this.#step, this.#need, this.#last, this.#started] = ['magic', 4, false, false]
    return true
  }
}

type Decoder = () => Transform
const createDecoder = (zlib as unknown as { createZstdDecompress?: Decoder }).createZstdDecompress

/** The bytes of a zstd stream decompressed, frame after frame (see above). */
export async function* decodeZstd(input: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  if (createDecoder === undefined)
    throw new ExportError('ERR_SOURCE', 'source', `The input is zstd-compressed, and node:zlib has no zstd in ${process.version} (Node >= 22.15 has)`)
  const chunks = input[Symbol.asyncIterator]()
  const scanner = new FrameScanner()
  let rest: Buffer | undefined // read past the end of the frame before
  let ended = false
  async function* frame(): AsyncGenerator<Buffer> {
    for (;;) {
      let chunk = rest
      rest = undefined
      if (chunk === undefined) {
        const next = await chunks.next()
        if (next.done) {
          ended = true
          if (scanner.inFrame) throw new ExportError('ERR_SOURCE', 'source', 'The zstd input ends inside a frame: it is truncated')
          return
        }
        chunk = Buffer.from(next.value)
      }
      const end = scanner.scan(chunk)
      if (end === -1) {
        yield chunk
        continue
      }
      if (end < chunk.length) rest = chunk.subarray(end)
      yield chunk.subarray(0, end)
      return
    }
  }
  while (!ended || rest !== undefined) {
    const decoder = createDecoder()
    const fed = pipeline(Readable.from(frame()), decoder)
    fed.catch(() => {}) // its error destroys the decoder, whose loop below throws it
    yield* decoder as AsyncIterable<Buffer>
    await fed
    if (rest === undefined && !ended) {
      const next = await chunks.next()
      if (next.done) break
      rest = Buffer.from(next.value)
    }
  }
}

/** The frames of zstd bytes in memory, decompressed and joined (each frame by itself, see above). */
export function decompressZstdSync(bytes: Buffer): Buffer {
  const decompress = (zlib as unknown as { zstdDecompressSync: (bytes: Buffer) => Buffer }).zstdDecompressSync
  const scanner = new FrameScanner()
  const output: Buffer[] = []
  for (let at = 0; at < bytes.length;) {
    const end = scanner.scan(bytes.subarray(at))
    if (end === -1) throw new ExportError('ERR_SOURCE', 'source', 'The zstd bytes end inside a frame: they are truncated')
    output.push(decompress(bytes.subarray(at, at + end)))
    at += end
  }
  return Buffer.concat(output)
}
