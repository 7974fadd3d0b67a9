import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Readable, pipeline, type Transform } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { invalidOption } from '../../core/errors.js'
import { decodeZstd } from '../../core/zstd-frames.js'
import { checkExactlyOne, checkString } from '../../core/options.js'

/** Where a file source reads from: exactly one of them. */
export interface FileInputOptions {
  /** A file path; gzip and zstd files are recognised by their first bytes. Progress gets the file size. */
  path?: string
  /** Any byte stream (an HTTP response, an S3 GetObject body); gzip and zstd are recognised the same way. */
  stream?: Readable | AsyncIterable<Uint8Array>
}

/** What a file source adds to its Readable: input progress in bytes (compressed bytes for .gz, .zst). */
export interface FileInputProgress {
  /** Bytes read from the file or stream so far. */
  readonly bytesRead: number
  /** Size of the file at `path` (once known); undefined for a stream. */
  readonly totalBytes: number | undefined
}

export function checkFileInput(options: FileInputOptions): void {
  checkExactlyOne(options, ['path', 'stream'])
  if (options.path !== undefined) checkString('path', options.path)
  const stream = options.stream as Partial<AsyncIterable<unknown>> | undefined
  if (stream !== undefined && typeof stream?.[Symbol.asyncIterator] !== 'function') invalidOption('stream', 'a Readable of bytes', stream)
}

const isGzip = (head: Buffer) => head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b
// A zstd frame's magic number, or a skippable frame's (pzstd's output begins with one).
const isZstd = (head: Buffer) => head.length >= 4 && (head.readUInt32LE(0) === 0xfd2fb528 || head.readUInt32LE(0) >>> 4 === 0x184d2a5)

/**
 * Pipes the input into `parser` (decompressing it on the fly when it starts with the gzip or the
 * zstd magic bytes) and gives `parser` the FileInputProgress getters. Destroying the parser closes the file.
 */
export function attachInput<T extends Transform>(options: FileInputOptions, parser: T): T & FileInputProgress {
  let bytesRead = 0
  let totalBytes: number | undefined
  const raw = options.path !== undefined ? createReadStream(options.path, { highWaterMark: 64 * 1024 }) : options.stream!
  if (options.path !== undefined)
    stat(options.path).then(
      (s) => (totalBytes = s.size),
      () => {},
    )

  async function* decode(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const chunks = source[Symbol.asyncIterator]()
    const next = async () => {
      const result = await chunks.next()
      if (!result.done) bytesRead += result.value.length
      return result
    }
    let head = Buffer.alloc(0)
    while (head.length < 4) {
      const result = await next()
      if (result.done) break
      head = Buffer.concat([head, Buffer.from(result.value)])
    }
    async function* all() {
      if (head.length > 0) yield head
      for (let result = await next(); !result.done; result = await next()) yield Buffer.from(result.value)
    }
    if (isZstd(head)) {
      yield* decodeZstd(all())
      return
    }
    if (!isGzip(head)) return yield* all()
    const gunzip = createGunzip()
    pipeline(Readable.from(all()), gunzip, () => {}) // an error destroys gunzip, and the loop below throws it
    yield* gunzip
  }

  pipeline(raw as Readable, decode, parser as Transform, (() => {}) as never) // errors reach the consumer through `parser`
  Object.defineProperties(parser, {
    bytesRead: { get: () => bytesRead, enumerable: true },
    totalBytes: { get: () => totalBytes, enumerable: true },
  })
  return parser as T & FileInputProgress
}
