import { createHash } from 'node:crypto'
import { Transform } from 'node:stream'

/** A pass-through stage that hashes (SHA-256) and counts the bytes that pass it. */
export class Sha256Tap extends Transform {
  readonly #hash = createHash('sha256')
  #bytes = 0
  #hex: string | undefined

  /** Bytes that passed. */
  get bytes(): number {
    return this.#bytes
  }

  /** The SHA-256 of every byte that passed, hex; only once the stream has ended. */
  get sha256(): string | undefined {
    return this.#hex
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: (error: Error | null, chunk: Buffer) => void): void {
    this.#hash.update(chunk)
    this.#bytes += chunk.length
    callback(null, chunk)
  }

  override _flush(callback: (error?: Error | null) => void): void {
    this.#hex = this.#hash.digest('hex')
    callback()
  }
}
