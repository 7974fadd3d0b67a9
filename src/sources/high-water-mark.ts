import type { Readable } from 'node:stream'

/**
 * Changes the number of chunks a source buffers once it knows what a chunk is (a batch of rows,
 * ~64 KiB of COPY text): Node fixes the high-water mark at construction and has no setter.
 */
export function setHighWaterMark(stream: Readable, chunks: number): void {
  ;(stream as unknown as { _readableState: { highWaterMark: number } })._readableState.highWaterMark = chunks
}
