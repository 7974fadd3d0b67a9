// csvSource's reader held to csv-parse (what csvSource read with before, and still does for
// `cast`): csv-spectrum's vectors, and a fuzzer of quotes, CR/LF, BOMs, delimiters, ragged rows,
// empty lines and multibyte characters, each input fed in random pieces (split inside characters
// too). Both must give the same rows, or fail with the same error: code, message, line.
import { readdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parse, type CastingFunction } from 'csv-parse/sync'
import { describe, expect, it } from 'vitest'
import { csvSource, isRowBatch, type CsvSourceOptions, type Row } from '../../src/index.js'
import { uniqueColumnNames } from '../../src/sources/column-names.js'
import { csvSourceError } from '../../src/sources/files/csv-reader.js'
import { csvLike, DELIMITERS, pieces, random, spoilUtf8 } from '../fixtures/csv-fuzz.js'

type Options = Pick<CsvSourceOptions, 'columns' | 'delimiter' | 'bom' | 'empty'>

/** csv-parse's rows for these bytes, with the options csvSource gave it, or its error as csvSource words it. */
function reference(bytes: Buffer, options: Options): unknown {
  const { columns = true, delimiter = ',', bom = true, empty = 'string' } = options
  // (A header's names are never values: an unquoted empty name stays '', not null.)
  const emptyNull: CastingFunction = (value, context) => (context.header ? value : value === '' && !context.quoting ? null : value)
  try {
    return parse(bytes, {
      columns: columns === true ? (names: string[]) => uniqueColumnNames(names) : columns,
      delimiter,
      bom,
      cast: empty === 'null' ? emptyNull : false,
      skip_empty_lines: true,
    }) as unknown
  } catch (error) {
    const wrapped = csvSourceError(error as Error)
    return { code: wrapped.code, message: wrapped.message }
  }
}

/** csvSource's rows for these bytes, given in these pieces (with batches asked for or not), or its error. */
async function ours(pieces: Buffer[], options: Options, batches = false): Promise<unknown> {
  const source = csvSource({ stream: Readable.from(pieces), ...options })
  if (batches) source.sendBatches?.()
  const rows: Row[] = []
  try {
    for await (const chunk of source) rows.push(...(isRowBatch(chunk) ? chunk.rows : [chunk as Row]))
    return rows
  } catch (error) {
    const { code, message } = error as { code: string; message: string }
    return { code, message }
  }
}

describe('csvSource reads as csv-parse does', () => {
  it("csv-spectrum's vectors: the rows it expects, and csv-parse's error for the one with a stray quote", async () => {
    const spectrum = dirname(createRequire(import.meta.url).resolve('csv-spectrum/package.json'))
    const names = (await readdir(join(spectrum, 'csvs'))).filter((name) => name.endsWith('.csv'))
    expect(names.length).toBeGreaterThanOrEqual(12)
    const failed: string[] = []
    for (const name of names) {
      const bytes = await readFile(join(spectrum, 'csvs', name))
      const expected = reference(bytes, {})
      if (Array.isArray(expected)) expect(expected, name).toEqual(JSON.parse(await readFile(join(spectrum, 'json', name.replace(/\.csv$/, '.json')), 'utf8')))
      else failed.push(name)
      expect(await ours([bytes], {}), name).toEqual(expected)
      expect(await ours(pieces(bytes, random(name.length)), {}, true), name).toEqual(expected)
    }
    // location_coordinates.csv has a quote inside an unquoted field: an error in strict RFC 4180.
    expect(failed).toEqual(['location_coordinates.csv'])
  })

  it('a fuzzer: 4,000 inputs in random pieces, the same rows or the same error (code, message and line)', async () => {
    let errors = 0
    for (let seed = 1; seed <= 4000; seed++) {
      const next = random(seed)
      const delimiter = DELIMITERS[seed % DELIMITERS.length]!
      const options: Options = {
        delimiter,
        bom: next() < 0.8,
        empty: next() < 0.3 ? 'null' : 'string',
        ...(next() < 0.2 ? { columns: ['c1', 'c2'] } : {}),
      }
      const bytes = spoilUtf8(Buffer.from(csvLike(next, delimiter)), next)
      const expected = reference(bytes, options)
      if (!Array.isArray(expected)) errors++
      const actual = await ours(pieces(bytes, next), options, next() < 0.5)
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        // The case, for reading: its seed, options and text.
        expect({ seed, options, text: bytes.toString(), actual }).toEqual({ seed, options, text: bytes.toString(), actual: expected })
      }
    }
    // Both kinds were tried: rows, and every error csv-parse gives.
    expect(errors).toBeGreaterThan(400)
    expect(errors).toBeLessThan(3600)
  })

  it('the errors, each worded as before: a ragged row, a bad closing or opening quote, a quote never closed', async () => {
    const cases: Array<[string, string]> = [
      ['a,b\r\n1,2\r\n3\r\n', 'Invalid CSV at line 3: Invalid Record Length: columns length is 2, got 1 on line 3'],
      [
        'a,b\n1,"x"é\n',
        'Invalid CSV at line 2: Invalid Closing Quote: got "Ã" at line 2 instead of delimiter, record delimiter, trimable character (if activated) or comment',
      ],
      ['a,b\n1,x"y\n', 'source failed: Invalid Opening Quote: a quote is found on field "b" at line 2, value is "x"'],
      ['a,b\n1,"2\n\n', 'Invalid CSV at line 3: Quote Not Closed: the parsing is finished with an opening quote at line 3'],
    ]
    for (const [text, message] of cases) {
      expect(await ours([Buffer.from(text)], {})).toEqual({ code: 'ERR_SOURCE', message })
      expect(reference(Buffer.from(text), {})).toEqual({ code: 'ERR_SOURCE', message })
    }
    // A byte order mark read as data (bom: false) before a quote: csv-parse names it.
    for (const bom of [
      [0xef, 0xbb, 0xbf],
      [0xff, 0xfe],
    ]) {
      const bytes = Buffer.concat([Buffer.from(bom), Buffer.from('"a",b\n1,2\n')])
      expect(await ours([bytes], { bom: false })).toEqual(reference(bytes, { bom: false }))
      expect(await ours([bytes], { bom: false })).toMatchObject({ message: expect.stringMatching(/\((utf8|utf16le) bom\)$/) as unknown })
    }
    // A delimiter matched as bytes must be whole characters, never what invalid bytes decode to.
    for (const delimiter of ['\ud800', '\ufffd', '"', '\n']) {
      expect(() => csvSource({ stream: Readable.from([]), delimiter })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
    }
  })

  it('a field of 3 MB across 64 KiB pieces, a UTF-16LE file with its BOM, a column named __proto__', async () => {
    const big = 'x"'.repeat(1_500_000)
    const bytes = Buffer.from(`id,text\n1,"${big.replace(/"/g, '""')}"\n2,short\n`)
    const chunks = Array.from({ length: Math.ceil(bytes.length / 65_536) }, (_, i) => bytes.subarray(i * 65_536, (i + 1) * 65_536))
    expect(await ours(chunks, {})).toEqual([
      { id: '1', text: big },
      { id: '2', text: 'short' },
    ])
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('name,city\nZoë,Zürich\n', 'utf16le')])
    expect(await ours(pieces(utf16, random(7)), {})).toEqual([{ name: 'Zoë', city: 'Zürich' }])
    expect(await ours(pieces(utf16, random(7)), {})).toEqual(reference(utf16, {}))
    const [row] = (await ours([Buffer.from('__proto__,b\n{},2\n')], {})) as Row[]
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype)
    expect(Object.entries(row!)).toEqual([
      ['__proto__', '{}'],
      ['b', '2'],
    ])
  })

  it("empty: 'null' keeps a header's empty name as a column (csv-parse's cast made it null: the column was dropped)", async () => {
    expect(await ours([Buffer.from('a,,b\n1,,""\n')], { empty: 'null' })).toEqual([{ a: '1', '': null, b: '' }])
  })

  it('a cell kept keeps its line alive, never the chunk it came in: 500 cells kept from 60 MB hold under 8 MB', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    // 240,000 rows of 250 bytes, made as they are read: the input itself is never held.
    function* input() {
      yield Buffer.from('id,memo,pad\n')
      for (let chunk = 0; chunk < 1000; chunk++) {
        let text = ''
        for (let i = 0; i < 240; i++) text += `${chunk * 240 + i},memo number ${chunk}-${i} of the file,${'p'.repeat(200)}\n`
        yield Buffer.from(text)
      }
    }
    gc()
    const before = process.memoryUsage().heapUsed
    const kept: string[] = []
    let rows = 0
    for await (const chunk of csvSource({ stream: Readable.from(input()) })) {
      for (const row of isRowBatch(chunk) ? chunk.rows : [chunk as Row]) if (rows++ % 480 === 0) kept.push(row.memo as string)
    }
    gc()
    const held = process.memoryUsage().heapUsed - before
    expect(rows).toBe(240_000)
    expect(kept).toHaveLength(500)
    expect(kept[1]).toBe('memo number 2-0 of the file')
    expect(held).toBeLessThan(8 * 1024 * 1024)
  })
})
