import { createReadStream } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { stringify } from 'csv-stringify/sync'
import { describe, expect, it } from 'vitest'
import { csvSource, ExportError, exportStream, fileSink, jsonl, jsonlSource, isRowBatch, type Progress } from '../../src/index.js'
import { collector, listDir, rowsAheadOfSlowSink, tempDir } from '../helpers.js'

const tricky = [
  { id: '1', text: 'plain', note: 'a,b' },
  { id: '2', text: 'say "hi"', note: 'line1\r\nline2' },
  { id: '3', text: 'Zürich ☕ 😀', note: '' },
]

async function rowsOf(source: Readable): Promise<unknown[]> {
  return source.toArray()
}

describe('csvSource', () => {
  it('parses quoted fields with commas, quotes and newlines, a BOM and CRLF', async () => {
    const dir = await tempDir()
    const path = join(dir, 'in.csv')
    await writeFile(path, '\ufeff' + stringify(tricky, { header: true, record_delimiter: '\r\n' }))
    expect(await rowsOf(csvSource({ path }))).toEqual(tricky)
  })

  it('reads gzipped input, detected by its magic bytes, from a path or a stream', async () => {
    const dir = await tempDir()
    const path = join(dir, 'in.csv.gz')
    await writeFile(path, gzipSync(stringify(tricky, { header: true })))
    expect(await rowsOf(csvSource({ path }))).toEqual(tricky)
    expect(await rowsOf(csvSource({ stream: createReadStream(path, { highWaterMark: 1 }) }))).toEqual(tricky)
  })

  it('takes column names for a file without header, and a delimiter', async () => {
    const rows = await rowsOf(csvSource({ stream: Readable.from([Buffer.from('1;x\n2;y\n')]), columns: ['n', 'v'], delimiter: ';' }))
    expect(rows).toEqual([
      { n: '1', v: 'x' },
      { n: '2', v: 'y' },
    ])
  })

  it('keeps values as strings unless cast is asked for', async () => {
    const input = () => Readable.from([Buffer.from('n,big\n1.50,12345678901234567890\n')])
    expect(await rowsOf(csvSource({ stream: input() }))).toEqual([{ n: '1.50', big: '12345678901234567890' }])
    expect(await rowsOf(csvSource({ stream: input(), cast: true }))).toEqual([{ n: 1.5, big: 12345678901234567000 }])
  })

  it('a ragged row rejects with ERR_SOURCE naming its line, and leaves no output', async () => {
    const dir = await tempDir()
    const input = join(dir, 'in.csv')
    await writeFile(input, 'a,b\n1,2\n3,4\n5,6,7\n8,9\n')
    const error = await exportStream({ source: csvSource({ path: input }), format: jsonl(), sink: fileSink({ path: join(dir, 'out.jsonl') }) }).catch((e) => e)
    expect(error).toBeInstanceOf(ExportError)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.message).toMatch(/^Invalid CSV at line 4: /)
    expect(error.cause.code).toBe('CSV_RECORD_INCONSISTENT_COLUMNS')
    expect(await listDir(dir)).toEqual(['in.csv'])
  })

  it('a missing file rejects with ERR_SOURCE (ENOENT)', async () => {
    const error = await exportStream({ source: csvSource({ path: '/nonexistent/x.csv' }), format: jsonl(), sink: collector() }).catch((e) => e)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.cause.code).toBe('ENOENT')
  })

  it('reports bytes read and the file size, so progress has percent and ETA', async () => {
    const dir = await tempDir()
    const path = join(dir, 'big.csv')
    const rows = Array.from({ length: 50_000 }, (_, i) => ({ id: String(i), email: `user${i}@example.com` }))
    const text = stringify(rows, { header: true })
    await writeFile(path, text)
    const reports: Progress[] = []
    const source = csvSource({ path })
    await exportStream({
      source,
      transform: async (row) => {
        if (Number(row.id) % 5000 === 0) await new Promise((r) => setTimeout(r, 15))
        return row
      },
      format: jsonl(),
      sink: collector(),
      progressIntervalMs: 10,
      onProgress: (p) => void reports.push(p),
    })
    expect(source.bytesRead).toBe(Buffer.byteLength(text))
    expect(source.totalBytes).toBe(Buffer.byteLength(text))
    const middle = reports.find((p) => p.percent! > 0 && p.percent! < 100)
    expect(middle).toMatchObject({ inputTotalBytes: Buffer.byteLength(text) })
    expect(middle!.etaMs).toBeGreaterThan(0)
    expect(reports.at(-1)).toMatchObject({ rows: 50_000, percent: 100, inputBytes: Buffer.byteLength(text) })
  })

  it('validates its options', () => {
    expect(() => csvSource({})).toThrow('Expected `path | stream` to be exactly one of them')
    expect(() => csvSource({ path: 'a', stream: Readable.from([]) })).toThrow('Expected `path | stream` to be exactly one of them')
    expect(() => csvSource({ path: 'a', columns: false as never })).toThrow('Expected `columns` to be `true` or a non-empty array of column names')
    expect(() => csvSource({ stream: 42 as never })).toThrow('Expected `stream` to be a Readable of bytes')
  })
})

describe('jsonlSource', () => {
  it('reads one value per line, LF or CRLF, skipping blank lines, across chunk boundaries', async () => {
    const text = '{"a":1}\r\n\n{"b":"é😀"}\n{"c":[1,2]}'
    const bytes = Buffer.from(text)
    const chunks = Array.from(bytes, (b) => Buffer.from([b])) // split inside multi-byte characters too
    expect(await rowsOf(jsonlSource({ stream: Readable.from(chunks) }))).toEqual([{ a: 1 }, { b: 'é😀' }, { c: [1, 2] }])
  })

  it('reads gzipped files', async () => {
    const dir = await tempDir()
    const path = join(dir, 'in.jsonl.gz')
    await writeFile(path, gzipSync('{"a":1}\n{"a":2}\n'))
    expect(await rowsOf(jsonlSource({ path }))).toEqual([{ a: 1 }, { a: 2 }])
  })

  it('a bad line rejects with ERR_SOURCE naming its number, and leaves no output', async () => {
    const dir = await tempDir()
    const path = join(dir, 'in.jsonl')
    await writeFile(path, '{"a":1}\n{"a":2}\n\n{"a":3,}\n{"a":4}\n')
    const error = await exportStream({ source: jsonlSource({ path }), format: jsonl(), sink: fileSink({ path: join(dir, 'out.jsonl') }) }).catch((e) => e)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.message).toMatch(/^Invalid JSON on line 4: /)
    expect(error.cause).toBeInstanceOf(SyntaxError)
    expect(await listDir(dir)).toEqual(['in.jsonl'])
  })

  it('a corrupt gzip rejects with ERR_SOURCE', async () => {
    const broken = gzipSync('{"a":1}\n'.repeat(1000)).subarray(0, 40)
    const error = await rowsOf(jsonlSource({ stream: Readable.from([broken]) })).catch((e) => e)
    expect(error.code).toBe('ERR_SOURCE')
  })
})

describe('a slow consumer', () => {
  it('keeps a CSV file source a bounded number of rows ahead of a sink that waits 5 ms per chunk', async () => {
    const dir = await tempDir()
    const path = join(dir, 'big.csv')
    const rows = Array.from({ length: 100_000 }, (_, i) => ({ id: String(i), text: 'x'.repeat(40) }))
    await writeFile(path, stringify(rows, { header: true }))
    const source = csvSource({ path })
    let produced = 0
    source.on('data', (chunk: unknown) => (produced += isRowBatch(chunk) ? chunk.rows.length : 1)) // counts rows as the source hands them on (in batches)
    source.pause()
    const { maxAhead, consumed } = await rowsAheadOfSlowSink(source, () => produced, 5)
    expect(consumed).toBe(100_000)
    // In flight: stream buffers and one ~64 KiB chunk per byte stage, about 6 x 64 KiB of output
    // rows (61 bytes each); the whole file is 100,000 rows.
    expect(maxAhead).toBeGreaterThan(0)
    expect(maxAhead * 61).toBeLessThan(8 * 64 * 1024)
  })
})
