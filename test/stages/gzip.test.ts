import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { gunzipSync, gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { csv, exportStream, fromIterable, gzip } from '../../src/index.js'
import { adjustableGzip, BLOCK_SIZE, growGzip } from '../../src/stages/gzip.js'
import { collector, tempDir } from '../helpers.js'

/** Compresses `input` in chunks of `chunkSize` with the parallel stage. */
async function compress(input: Buffer, options: { level?: number; threads?: number } = {}, chunkSize = 65_536): Promise<Buffer> {
  const chunks: Buffer[] = []
  for (let i = 0; i < input.length; i += chunkSize) chunks.push(input.subarray(i, i + chunkSize))
  const sink = collector()
  await pipeline(Readable.from(chunks), gzip({ threads: 2, ...options }), sink)
  return sink.buffer()
}

const compressible = Buffer.from('stream-export,1234,"quoted, text"\n'.repeat(40_000))

describe('gzip (parallel)', () => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from('x')],
    ['random text', Buffer.from(Array.from({ length: 900_000 }, (_, i) => String.fromCharCode(32 + ((i * 7919) % 95))).join(''))],
    ['highly compressible', compressible],
    ['incompressible', randomBytes(700_000)],
    ['exactly one block', randomBytes(BLOCK_SIZE)],
    ['one byte over a block', Buffer.concat([compressible.subarray(0, BLOCK_SIZE), Buffer.from('!')])],
    ['exactly two blocks', compressible.subarray(0, 2 * BLOCK_SIZE)],
  ]
  for (const [name, input] of cases) {
    it(`round-trips ${name} (${input.length} bytes) through zlib.gunzipSync`, async () => {
      for (const chunkSize of [65_536, 1_000_003]) {
        const output = await compress(input, {}, chunkSize)
        expect(gunzipSync(output).equals(input)).toBe(true)
      }
    })
  }

  it('writes one standard member that gzip -t accepts and gzip -l sizes right', async () => {
    const dir = await tempDir()
    const input = Buffer.concat([compressible, randomBytes(300_000), compressible])
    const path = join(dir, 'x.csv.gz')
    await writeFile(path, await compress(input, { level: 9 }))
    execFileSync('gzip', ['-t', path])
    const listing = execFileSync('gzip', ['-l', path]).toString().trim().split('\n')[1].trim().split(/\s+/)
    expect(Number(listing[1])).toBe(input.length % 2 ** 32)
    expect(execFileSync('gzip', ['-dc', path], { maxBuffer: 64 * 1024 * 1024 }).equals(input)).toBe(true)
  })

  it('compresses 50,000 statement rows (23 blocks) within 1% of zlib.gzipSync at the same level', async () => {
    const text = collector()
    await exportStream({ source: fromIterable(statements(50_000)), format: csv(), sink: text })
    const input = text.buffer()
    const reference = gzipSync(input, { level: 6 }).length
    const sink = collector()
    await exportStream({ source: fromIterable(statements(50_000)), format: csv(), gzip: { level: 6, threads: 2 }, sink })
    expect(input.length).toBeGreaterThan(22 * BLOCK_SIZE)
    const ours = sink.buffer()
    expect(gunzipSync(ours).equals(input)).toBe(true)
    expect(Math.abs(ours.length - reference) / reference).toBeLessThan(0.01)
  }, 120_000)

  it('threads > 1 compresses in parallel blocks, threads: 1 is zlib itself, and exportStream leaves one core to row encoding', async () => {
    const rows = Array.from({ length: 20_000 }, (_, i) => ({ i, text: `row ${i} of the parallel gzip check` }))
    const plain = collector()
    await exportStream({ source: rows, format: csv(), sink: plain })
    const input = plain.buffer()
    const zlibBytes = gzipSync(input, { level: 6 })
    expect((await compress(input, { threads: 1 })).equals(zlibBytes)).toBe(true)
    const parallel = await compress(input, { threads: 2 })
    expect(gunzipSync(parallel).equals(input)).toBe(true)
    // Blocks compressed apart (each with the previous 32 KiB as dictionary): other bytes than one zlib stream.
    expect(parallel.equals(zlibBytes)).toBe(false)
    const viaExport = collector()
    await exportStream({ source: rows, format: csv(), gzip: true, sink: viaExport })
    const expected = availableParallelism() > 2 ? parallel : zlibBytes // every core but one
    expect(viaExport.buffer().equals(expected)).toBe(true)
  })

  it('keeps backpressure: a slow sink holds the writer back', async () => {
    const input = randomBytes(8 * BLOCK_SIZE)
    let written = 0
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < input.length; i += 65_536) {
          written += 65_536
          yield input.subarray(i, i + 65_536)
        }
      })(),
    )
    const sink = collector(20)
    let maxAhead = 0
    const watch = setInterval(() => (maxAhead = Math.max(maxAhead, written - sink.buffer().length)), 2)
    await pipeline(source, gzip({ threads: 2 }), sink)
    clearInterval(watch)
    expect(gunzipSync(sink.buffer()).equals(input)).toBe(true)
    // threads x 2 blocks in flight plus stream buffers, not the whole 2 MiB input.
    expect(maxAhead).toBeLessThan(6 * BLOCK_SIZE)
  })

  it('validates its options', () => {
    expect(() => gzip({ threads: 0 })).toThrow('Expected `threads` to be a positive integer, got `0` (number)')
    expect(() => gzip({ level: -1 })).toThrow('Expected `level` to be an integer from 0 to 9')
  })

  it('a stage whose threads grow while it runs (as the pipeline grows it when the source encodes) writes one valid member', async () => {
    const input = Buffer.from(randomBytes(3 * BLOCK_SIZE).toString('base64'))
    const stage = adjustableGzip(6, 1)
    const sink = collector()
    const done = pipeline(stage, sink)
    stage.write(input.subarray(0, BLOCK_SIZE))
    growGzip(stage, 4)
    stage.end(input.subarray(BLOCK_SIZE))
    await done
    expect(gunzipSync(sink.buffer()).equals(input)).toBe(true)
  })
})
