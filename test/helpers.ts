import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Transform } from 'node:stream'
import { onTestFinished } from 'vitest'
import { exportStream, fromIterable, jsonl } from '../src/index.js'

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

/** A Writable collecting bytes, optionally slow. */
export function collector(delayMs = 0): Writable & { buffer(): Buffer; chunks: number } {
  const parts: Buffer[] = []
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      parts.push(chunk)
      sink.chunks++
      if (delayMs > 0) setTimeout(cb, delayMs)
      else cb()
    },
  }) as Writable & { buffer(): Buffer; chunks: number }
  sink.chunks = 0
  sink.buffer = () => Buffer.concat(parts)
  return sink
}

/**
 * Exports `source` as JSON Lines into a sink that waits `delayMs` per chunk and samples how far
 * the source runs ahead: `produced()` minus the lines the sink has received.
 */
export async function rowsAheadOfSlowSink(source: Readable, produced: () => number, delayMs: number): Promise<{ maxAhead: number; consumed: number }> {
  const sink = collector(delayMs)
  const consumed = () => sink.buffer().toString().split('\n').length - 1
  let maxAhead = 0
  const watch = setInterval(() => (maxAhead = Math.max(maxAhead, produced() - consumed())), 2)
  try {
    await exportStream({ source, format: jsonl(), sink })
  } finally {
    clearInterval(watch)
  }
  return { maxAhead, consumed: consumed() }
}
