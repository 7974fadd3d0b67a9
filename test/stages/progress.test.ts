import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, expect, it } from 'vitest'
import { csv, progress, type Progress } from '../../src/index.js'
import { collector } from '../helpers.js'

describe('progress tap', () => {
  it('counts bytes in a pipeline composed by hand and reads rows from the format', async () => {
    const reports: Progress[] = []
    const format = csv()
    const sink = collector()
    const tap = progress({ onProgress: (p) => void reports.push(p), rows: () => format.rows, totalRows: 3 })
    await pipeline(Readable.from([{ a: 1 }, { a: 2 }, { a: 3 }]), format, tap, sink)
    expect(reports).toHaveLength(1) // only the final report: the run is shorter than the interval
    expect(reports[0]).toMatchObject({ rows: 3, bytes: sink.buffer().length, uncompressedBytes: sink.buffer().length, totalRows: 3, percent: 100 })
    expect(tap.bytes).toBe(sink.buffer().length)
  })

  it('counts rows when placed before the format (objectMode)', async () => {
    const tap = progress({ objectMode: true })
    await pipeline(Readable.from([{ a: 1 }, { a: 2 }]), tap, new Writable({ objectMode: true, write: (_c, _e, cb) => cb() }))
    expect(tap.snapshot()).toMatchObject({ rows: 2, bytes: 0 })
  })

  it('reports 100% only in the final report, and no ETA before anything moved', async () => {
    const empty = progress({ totalRows: 0 })
    expect(empty.snapshot().percent).toBeLessThan(100)
    const waiting = progress({ totalRows: 10 })
    expect(waiting.snapshot()).toMatchObject({ rows: 0, percent: 0 })
    expect(waiting.snapshot().etaMs).toBeUndefined()
    waiting.destroy()
    const reports: Progress[] = []
    await pipeline(Readable.from([]), progress({ totalRows: 0, onProgress: (p) => void reports.push(p) }), collector())
    expect(reports.at(-1)).toMatchObject({ rows: 0, totalRows: 0, percent: 100, etaMs: 0 })
    empty.destroy()
  })

  it('an estimate that is passed becomes an unknown total, never 100% while rows still come', async () => {
    const reports: Progress[] = []
    const tap = progress({ objectMode: true, totalRows: 5, intervalMs: 1, onProgress: (p) => void reports.push(p) })
    async function* rows() {
      for (let i = 0; i < 20; i++) {
        yield { i }
        await new Promise((resolve) => setTimeout(resolve, 3))
      }
    }
    await pipeline(Readable.from(rows()), tap, new Writable({ objectMode: true, write: (_row, _e, cb) => cb() }))
    const final = reports.at(-1)!
    expect(final).toMatchObject({ rows: 20, totalRows: 20, percent: 100 })
    const before = reports.slice(0, -1)
    expect(before.some((p) => p.rows > 5)).toBe(true)
    expect(before.every((p) => (p.percent ?? 0) < 100)).toBe(true)
    expect(before.filter((p) => p.rows > 5).every((p) => p.percent === undefined && p.totalRows === undefined)).toBe(true)
  })

  it('takes percent and ETA from input bytes when the row count is unknown', () => {
    let read = 250
    const tap = progress({ input: () => ({ bytesRead: read, totalBytes: 1000 }) })
    expect(tap.snapshot()).toMatchObject({ inputBytes: 250, inputTotalBytes: 1000, percent: 25 })
    expect(tap.snapshot().etaMs).toBeGreaterThan(0)
    read = 1000
    expect(tap.snapshot().percent).toBeLessThan(100) // all bytes read is not the end: rows are still on their way
    tap.destroy()
  })

  it('a rejected onProgress promise fails the stream with ERR_PROGRESS', async () => {
    const tap = progress({ onProgress: () => Promise.reject(new Error('lost lock')) })
    const error = await pipeline(Readable.from([Buffer.from('x')]), tap, collector()).catch((e) => e)
    expect(error.code).toBe('ERR_PROGRESS')
    expect(error.cause.message).toBe('lost lock')
  })

  it('validates options', () => {
    expect(() => progress({ intervalMs: -1 })).toThrow('Expected `intervalMs` to be a positive integer of milliseconds, at most 2147483647, got `-1` (number)')
    expect(() => progress({ onProgress: 'log' as never })).toThrow('Expected `onProgress` to be a function')
  })
})
