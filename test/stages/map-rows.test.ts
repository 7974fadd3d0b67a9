import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, expect, it } from 'vitest'
import { csv, ExportError, exportStream, fileSink, jsonl, mapRows, postgresCopySource } from '../../src/index.js'
import { collector, listDir, tempDir } from '../helpers.js'

const numbers = (count: number) => Array.from({ length: count }, (_, i) => ({ id: i, email: `user${i}@example.com` }))
const lines = (buffer: Buffer) =>
  buffer
    .toString()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))

describe('transform', () => {
  it('maps rows and passes the row index', async () => {
    const sink = collector()
    await exportStream({ source: numbers(3), transform: (row, i) => ({ n: row.id * 10, i }), format: jsonl(), sink })
    expect(lines(sink.buffer())).toEqual([
      { n: 0, i: 0 },
      { n: 10, i: 1 },
      { n: 20, i: 2 },
    ])
  })

  it('drops rows for undefined and does not count them', async () => {
    const sink = collector()
    const result = await exportStream({ source: numbers(10), transform: (row) => (row.id % 3 === 0 ? row : undefined), format: csv({ columns: ['id'] }), sink })
    expect(sink.buffer().toString()).toBe('id\n0\n3\n6\n9\n')
    expect(result.rows).toBe(4)
  })

  it('applies an array of functions in order; a drop stops the chain', async () => {
    const sink = collector()
    const seen: number[] = []
    await exportStream({
      source: numbers(4),
      transform: [
        (row) => (row.id === 1 ? undefined : { ...row, email: undefined }),
        (row) => {
          seen.push(row.id)
          return { id: row.id, tag: `#${row.id}` }
        },
      ],
      format: jsonl(),
      sink,
    })
    expect(seen).toEqual([0, 2, 3])
    expect(lines(sink.buffer())).toEqual([
      { id: 0, tag: '#0' },
      { id: 2, tag: '#2' },
      { id: 3, tag: '#3' },
    ])
  })

  it('awaits async functions and keeps the order, reading the next row only when one is done', async () => {
    let read = 0
    let running = 0
    let maxRunning = 0
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 60; i++) {
          read++
          yield { id: i }
        }
      })(),
    )
    const sink = collector()
    await exportStream({
      source,
      transform: async (row) => {
        running++
        maxRunning = Math.max(maxRunning, running)
        await new Promise((r) => setTimeout(r, (row.id * 7) % 5))
        running--
        return { id: row.id, read }
      },
      format: jsonl(),
      sink,
    })
    const out = lines(sink.buffer())
    expect(out.map((r) => r.id)).toEqual(Array.from({ length: 60 }, (_, i) => i))
    expect(maxRunning).toBe(1)
    // The source ran at most a stream buffer (16 rows) ahead of the transform.
    expect(Math.max(...out.map((r) => r.read - r.id))).toBeLessThanOrEqual(20)
  })

  it('null drops a row as undefined does, before the next function runs', async () => {
    const sink = collector()
    const later: number[] = []
    await exportStream({ source: numbers(3), transform: [(r) => (r.id === 1 ? null : r), (r) => (later.push(r.id), { id: r.id })], format: jsonl(), sink })
    expect(later).toEqual([0, 2])
    expect(lines(sink.buffer())).toEqual([{ id: 0 }, { id: 2 }])
  })

  it('mixes sync and async functions in one chain', async () => {
    const sink = collector()
    await exportStream({
      source: numbers(3),
      transform: [(r) => ({ id: r.id }), async (r) => ({ ...r, twice: r.id * 2 }), (r) => (r.id === 2 ? undefined : r)],
      format: jsonl(),
      sink,
    })
    expect(lines(sink.buffer())).toEqual([
      { id: 0, twice: 0 },
      { id: 1, twice: 2 },
    ])
  })

  it('a throwing transform rejects with ERR_TRANSFORM naming the row, and leaves no file', async () => {
    const dir = await tempDir()
    for (const transform of [
      (row: { id: number }) => {
        if (row.id === 1234) throw new Error('bad email')
        return row
      },
      async (row: { id: number }) => {
        if (row.id === 1234) throw new Error('bad email')
        return row
      },
    ]) {
      const error = await exportStream({ source: numbers(5000), transform, format: csv(), sink: fileSink({ path: join(dir, 'out.csv') }) }).catch((e) => e)
      expect(error).toBeInstanceOf(ExportError)
      expect(error.code).toBe('ERR_TRANSFORM')
      expect(error.stage).toBe('transform')
      expect(error.message).toBe('Transform failed on row 1234: bad email')
      expect(error.cause.message).toBe('bad email')
      expect(await listDir(dir)).toEqual([])
    }
  })

  it('works alone as mapRows() in a pipeline', async () => {
    const sink = collector()
    await pipeline(
      Readable.from(numbers(2)),
      mapRows((r) => ({ e: r.email.toUpperCase() })),
      jsonl(),
      sink,
    )
    expect(lines(sink.buffer())).toEqual([{ e: 'USER0@EXAMPLE.COM' }, { e: 'USER1@EXAMPLE.COM' }])
  })

  it('validates transforms', async () => {
    expect(() => mapRows('x' as never)).toThrow('Expected `transform` to be a function, got `"x"` (string)')
    expect(() => mapRows([])).toThrow('Expected `transform` to be a function or a non-empty array of functions')
    expect(() => mapRows([() => 1, 2 as never])).toThrow('Expected `transform[1]` to be a function, got `2` (number)')
    const error = await exportStream({
      source: postgresCopySource({ connectionString: 'postgres://x@127.0.0.1:1/x', text: 'select 1' }),
      transform: (r) => r,
      sink: collector(),
    }).catch((e) => e)
    expect(error.message).toContain('Expected `transform` to be undefined for a source that emits formatted bytes')
  })
})
