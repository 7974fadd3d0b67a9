import { Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Transform } from 'node:stream'
import { expect, onTestFinished } from 'vitest'
import { exportStream, fromIterable, jsonl, type ExportOptions } from '../src/index.js'
import { KeysetReadable } from '../src/sources/keyset-pages.js'

/** A fresh temp directory per test, removed afterwards. */

/** A fresh temporary directory, removed when the current test finishes. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'stream-export-test-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export async function listDir(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort()
}

/** Runs rows through a format stage and returns the output text. */
export async function formatRows(format: Transform, rows: Iterable<object> | AsyncIterable<object>): Promise<string> {
  const chunks: Buffer[] = []
  await pipeline(
    fromIterable(rows),
    format,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        chunks.push(chunk)
        cb()
      },
    }),
  )
  return Buffer.concat(chunks).toString('utf8')
}

/** A Writable collecting bytes, optionally slow; it counts the chunks and the line feeds it received. */
export function collector(delayMs = 0): Writable & { buffer(): Buffer; chunks: number; lines: number } {
  const parts: Buffer[] = []
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      parts.push(chunk)
      sink.chunks++
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) sink.lines++
      if (delayMs > 0) setTimeout(cb, delayMs)
      else cb()
    },
  }) as Writable & { buffer(): Buffer; chunks: number; lines: number }
  sink.chunks = 0
  sink.lines = 0
  sink.buffer = () => Buffer.concat(parts)
  return sink
}

/**
 * Exports `source` as JSON Lines into a sink that waits `delayMs` per chunk and samples how far
 * the source runs ahead: `produced()` minus the lines the sink has received.
 */
export async function rowsAheadOfSlowSink(source: Readable, produced: () => number, delayMs: number): Promise<{ maxAhead: number; consumed: number }> {
  const sink = collector(delayMs)
  const consumed = () => sink.lines
  let maxAhead = 0
  const watch = setInterval(() => (maxAhead = Math.max(maxAhead, produced() - consumed())), 2)
  try {
    await exportStream({ source, format: jsonl(), sink })
  } finally {
    clearInterval(watch)
  }
  return { maxAhead, consumed: consumed() }
}

/** Every byte `exportStream` writes for `options`, in memory: the serial export a resumed, split or faulted one must reproduce. */
export async function exportedBytes(options: Omit<ExportOptions, 'sink'>): Promise<Buffer> {
  const sink = collector()
  await exportStream({ ...options, sink })
  return sink.buffer()
}

/**
 * Asserts that `actual` holds exactly the bytes of `expected` (a memcmp, not a parse: whole
 * exports are compared this way); a difference is reported as the first line that differs.
 */
export function expectSameBytes(actual: Buffer, expected: Buffer): void {
  if (actual.equals(expected)) return
  let at = 0
  while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++
  // (lastIndexOf counts a negative offset from the end: a difference in the first byte is line 0.)
  const start = at === 0 ? 0 : expected.lastIndexOf(10, at - 1) + 1
  const line = (bytes: Buffer) => {
    const end = bytes.indexOf(10, at)
    return bytes.subarray(start, end === -1 ? bytes.length : end).toString()
  }
  // `same` makes it fail whatever the lines show (two outputs may differ in a byte the lines share).
  expect({ bytes: actual.length, lineAtFirstDifference: line(actual), same: false }).toEqual({
    bytes: expected.length,
    lineAtFirstDifference: line(expected),
    same: true,
  })
}

/** 1 MiB of SHA-256 output (a hash chain): random to gzip, the same on every run. */
const NOISE = (() => {
  const blocks = [createHash('sha256').update('stream-export').digest()]
  while (blocks.length < 32_768) blocks.push(createHash('sha256').update(blocks.at(-1)!).digest())
  return Buffer.concat(blocks)
})()

/**
 * `bytes` incompressible bytes for row `seed`, as base64, the same on every run: consecutive seeds
 * take consecutive slices of 1 MiB of hash output, which repeats only megabytes of output later,
 * far beyond gzip's 32 KiB window.
 */
export function noise(seed: number, bytes = 96): string {
  const start = (seed * bytes) % (NOISE.length - (NOISE.length % bytes))
  return NOISE.toString('base64', start, start + bytes)
}

/** The checksum of bytes by the SDK's own CRCs (what S3 computes), base64: never the library's combination of parts'. */
export async function sdkChecksum(algorithm: 'CRC64NVME' | 'CRC32C', bytes: Uint8Array): Promise<string> {
  const crc = algorithm === 'CRC64NVME' ? new Crc64Nvme() : new Crc32c()
  crc.update(bytes)
  return Buffer.from(await crc.digest()).toString('base64')
}

/**
 * Rows 1..`count` made by `row(id)`, as a keyset source (keyed by `id`) over pages of `pageSize`,
 * continuing after `after`: what a resumed export reads, without a database.
 */
export function keyedRows<R extends { id: number }>(count: number, row: (id: number) => R, after?: number, pageSize = 1000): KeysetReadable<R> {
  return new KeysetReadable<R>({
    batchSize: pageSize,
    after,
    keyOf: (r) => r.id,
    fetchPage: async (last) => {
      const from = ((last as number | undefined) ?? 0) + 1
      return Array.from({ length: Math.max(0, Math.min(pageSize, count - from + 1)) }, (_, i) => row(from + i))
    },
    release: async () => {},
  })
}
