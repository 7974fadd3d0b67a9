import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { gunzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import { describe, expect, it } from 'vitest'
import { csv, ExportError, exportStream, fileSink, jsonArray, jsonl, type Progress } from '../src/index.js'
import { collector, listDir, rowsAheadOfSlowSink, tempDir } from './helpers.js'

function* numbered(count: number) {
  for (let i = 0; i < count; i++) yield { id: i, name: `name ${i}` }
}

describe('exportStream', () => {
  it('exports rows to a gzipped CSV file and reports the result', async () => {
    const dir = await tempDir()
    const path = join(dir, 'out.csv.gz')
    const result = await exportStream({ source: numbered(1000), format: csv(), gzip: true, sink: fileSink({ path }) })
    const file = await readFile(path)
    const text = gunzipSync(file).toString()
    expect(parse(text, { columns: true })).toEqual(Array.from(numbered(1000), (r) => ({ id: String(r.id), name: r.name })))
    expect(result.rows).toBe(1000)
    expect(result.bytes).toBe(file.length)
    expect(result.uncompressedBytes).toBe(Buffer.byteLength(text))
    expect(result.location).toEqual({ path })
    expect(result.durationMs).toBeGreaterThan(0)
    expect(await listDir(dir)).toEqual(['out.csv.gz'])
  })

  it('accepts gzip options and writes plain output without gzip', async () => {
    const sink = collector()
    const result = await exportStream({ source: numbered(3), format: jsonl(), sink })
    expect(sink.buffer().toString()).toBe('{"id":0,"name":"name 0"}\n{"id":1,"name":"name 1"}\n{"id":2,"name":"name 2"}\n')
    expect(result.bytes).toBe(result.uncompressedBytes)
    expect(result.location).toBeUndefined()

    const fast = collector()
    await exportStream({ source: numbered(100), format: jsonl(), gzip: { level: 1 }, sink: fast })
    expect(gunzipSync(fast.buffer()).toString().split('\n')).toHaveLength(101)
  })

  it('zero rows: CSV header only, [] and a valid empty gzip', async () => {
    const header = collector()
    await exportStream({ source: [], format: csv({ columns: ['id', 'name'] }), gzip: true, sink: header })
    expect(gunzipSync(header.buffer()).toString()).toBe('id,name\n')

    const array = collector()
    const result = await exportStream({ source: [], format: jsonArray(), gzip: true, sink: array })
    expect(JSON.parse(gunzipSync(array.buffer()).toString())).toEqual([])
    expect(result.rows).toBe(0)

    const empty = collector()
    await exportStream({ source: [], format: jsonl(), gzip: true, sink: empty })
    expect(empty.buffer().length).toBeGreaterThan(0)
    expect(gunzipSync(empty.buffer()).length).toBe(0)
  })

  it('a source that throws midway rejects with ERR_SOURCE and leaves no file', async () => {
    const dir = await tempDir()
    async function* failing() {
      yield* numbered(5000)
      throw new Error('connection reset')
    }
    const error = await exportStream({ source: failing(), format: csv(), gzip: true, sink: fileSink({ path: join(dir, 'out.csv.gz') }) }).catch((e) => e)
    expect(error).toBeInstanceOf(ExportError)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.stage).toBe('source')
    expect(error.cause.message).toBe('connection reset')
    expect(await listDir(dir)).toEqual([])
  })

  it('a source that failed before the export started (its error already emitted) is ERR_SOURCE with its error, not a later stage', async () => {
    const dir = await tempDir()
    const source = new Readable({ objectMode: true, read() {} })
    source.on('error', () => {}) // the caller's listener, which saw the error go by
    source.destroy(new Error('the database went away'))
    await new Promise((resolve) => setImmediate(resolve))
    const error = await exportStream({ source, format: csv(), gzip: true, sink: fileSink({ path: join(dir, 'out.csv.gz') }) }).catch((e) => e)
    expect(error).toMatchObject({ code: 'ERR_SOURCE', stage: 'source', cause: { message: 'the database went away' } })
    expect(await listDir(dir)).toEqual([])
  })

  it('abort midway rejects with ERR_ABORTED, runs the source cleanup and leaves no partial file', async () => {
    const dir = await tempDir()
    const controller = new AbortController()
    let cleanedUp = false
    let produced = 0
    async function* endless() {
      try {
        for (;;) {
          produced++
          if (produced === 20_000) controller.abort(new Error('user cancelled'))
          yield { n: produced }
          if (produced % 1000 === 0) await new Promise((r) => setImmediate(r))
        }
      } finally {
        cleanedUp = true
      }
    }
    const error = await exportStream({
      source: endless(),
      format: csv(),
      gzip: true,
      sink: fileSink({ path: join(dir, 'out.csv.gz') }),
      signal: controller.signal,
    }).catch((e) => e)
    expect(error).toBeInstanceOf(ExportError)
    expect(error.code).toBe('ERR_ABORTED')
    expect(error.cause.message).toBe('user cancelled')
    expect(cleanedUp).toBe(true)
    expect(await listDir(dir)).toEqual([])
  })

  it('an already aborted signal rejects with ERR_ABORTED before writing anything', async () => {
    const dir = await tempDir()
    const error = await exportStream({ source: numbered(10), format: csv(), sink: fileSink({ path: join(dir, 'x.csv') }), signal: AbortSignal.abort() }).catch(
      (e) => e,
    )
    expect(error.code).toBe('ERR_ABORTED')
    expect(await listDir(dir)).toEqual([])
  })

  it('an existing file at the target survives a failed export unchanged', async () => {
    const dir = await tempDir()
    const path = join(dir, 'report.csv')
    await writeFile(path, 'previous export\n')
    async function* failing() {
      yield* numbered(100_000)
      throw new Error('boom')
    }
    const error = await exportStream({ source: failing(), format: csv(), sink: fileSink({ path }) }).catch((e) => e)
    expect(error.code).toBe('ERR_SOURCE')
    expect(await readFile(path, 'utf8')).toBe('previous export\n')
    expect(await listDir(dir)).toEqual(['report.csv'])
  })

  it('replaces an existing file only when the export succeeds', async () => {
    const dir = await tempDir()
    const path = join(dir, 'report.csv')
    await writeFile(path, 'previous export\n')
    await exportStream({ source: numbered(2), format: csv(), sink: fileSink({ path }) })
    expect(await readFile(path, 'utf8')).toBe('id,name\n0,name 0\n1,name 1\n')
  })

  it('a sink failure rejects with ERR_SINK and destroys the source', async () => {
    const dir = await tempDir()
    let cleanedUp = false
    async function* rows() {
      try {
        yield* numbered(100)
      } finally {
        cleanedUp = true
      }
    }
    const error = await exportStream({
      source: rows(),
      format: csv(),
      sink: fileSink({ path: join(dir, 'missing-dir', 'x.csv'), createDirectories: false }),
    }).catch((e) => e)
    expect(error.code).toBe('ERR_SINK')
    expect(error.cause.code).toBe('ENOENT')
    expect(cleanedUp).toBe(true)
  })

  it('keeps the source a bounded number of rows ahead of a slow sink', async () => {
    let produced = 0
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 100_000; i++) {
          produced++
          yield { id: i, text: 'x'.repeat(40) }
        }
      })(),
    )
    const { maxAhead, consumed } = await rowsAheadOfSlowSink(source, () => produced, 1)
    expect(consumed).toBe(100_000)
    // What may be in flight: 16 rows in the source's buffer and about one ~64 KiB chunk per byte
    // stage (format, two counters, the sink): ~5 chunks of ~1,100 rows of 61 bytes. Without
    // backpressure the source would run all 100,000 rows ahead.
    const rowBytes = Buffer.byteLength(JSON.stringify({ id: 99_999, text: 'x'.repeat(40) })) + 1
    expect(maxAhead).toBeGreaterThan(0)
    expect(maxAhead * rowBytes).toBeLessThan(6 * 64 * 1024)
  })

  it('reports progress while running and once at the end', async () => {
    const reports: Progress[] = []
    // The source waits for a report at rows 5 and 12: reports in the middle, whatever the timing.
    let reported = () => {}
    async function* paced() {
      for (let i = 0; i < 20; i++) {
        yield { i }
        if (i === 5 || i === 12) await new Promise<void>((resolve) => (reported = resolve))
      }
    }
    const result = await exportStream({
      source: paced(),
      format: jsonl(),
      gzip: true,
      sink: collector(),
      totalRows: 20,
      progressIntervalMs: 10,
      onProgress: (p) => {
        reports.push(p)
        reported()
      },
    })
    const last = reports.at(-1)!
    expect(last).toMatchObject({ rows: 20, totalRows: 20, percent: 100, bytes: result.bytes, uncompressedBytes: result.uncompressedBytes })
    expect(last.rowsPerSecond).toBeGreaterThan(0)
    const middle = reports.find((p) => p.rows > 0 && p.rows < 20)
    expect(middle?.percent).toBeCloseTo((middle!.rows / 20) * 100)
    expect(middle?.etaMs).toBeGreaterThan(0)
    for (let i = 1; i < reports.length; i++) expect(reports[i].rows).toBeGreaterThanOrEqual(reports[i - 1].rows)
  })

  it('asks the source for its row count when the caller gives none', async () => {
    const source = Object.assign(Readable.from(numbered(10)), { countRows: async () => 10 })
    const reports: Progress[] = []
    await exportStream({ source, format: csv(), sink: collector(), onProgress: (p) => void reports.push(p) })
    expect(reports.at(-1)).toMatchObject({ rows: 10, totalRows: 10, percent: 100 })
  })

  it('a throwing onProgress fails the export with ERR_PROGRESS', async () => {
    const dir = await tempDir()
    const error = await exportStream({
      source: numbered(10),
      format: csv(),
      sink: fileSink({ path: join(dir, 'x.csv') }),
      onProgress: () => {
        throw new Error('redis down')
      },
    }).catch((e) => e)
    expect(error.code).toBe('ERR_PROGRESS')
    expect(error.cause.message).toBe('redis down')
    expect(await listDir(dir)).toEqual([])
  })

  it('validates options before any I/O', async () => {
    const dir = await tempDir()
    const path = join(dir, 'x.csv')
    const attempt = (options: object) => exportStream({ source: numbered(1), format: csv(), sink: fileSink({ path }), ...options }).catch((e) => e)
    expect((await attempt({ format: undefined })).message).toBe(
      'Expected `format` to be a format stage such as csv(), jsonl() or jsonArray(), got `undefined` (undefined)',
    )
    expect((await attempt({ sink: {} })).code).toBe('ERR_INVALID_OPTION')
    expect((await attempt({ source: 'rows' })).code).toBe('ERR_INVALID_OPTION')
    expect((await attempt({ gzip: { level: 11 } })).message).toBe('Expected `level` to be an integer from 0 to 9, got `11` (number)')
    expect((await attempt({ progressIntervalMs: 0 })).code).toBe('ERR_INVALID_OPTION')
    expect((await attempt({ signal: 'stop' })).code).toBe('ERR_INVALID_OPTION')
    expect(existsSync(path)).toBe(false)
    expect(await listDir(dir)).toEqual([])
  })
})
