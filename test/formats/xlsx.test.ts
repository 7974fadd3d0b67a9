// The XLSX format read back by an independent reader (exceljs, the ecosystem's workbook library)
// and, for the markup itself, by Python's zipfile: values and their types, the header, the
// frozen pane and autofilter, sheets at the row limit, ZIP64, Postgres types end to end.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Decimal128, Long, ObjectId } from 'mongodb'
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { exportStream, fileSink, fromIterable, postgresSource, s3Sink, xlsx, type Manifest, type XlsxOptions } from '../../src/index.js'
import { XlsxFormat, normalizeXlsxOptions, type XlsxInternals } from '../../src/formats/xlsx/index.js'
import { databaseUrl } from '../fixtures/postgres.js'
import { startS3 } from '../fixtures/s3-server.js'
import { entry, libreOfficeHere, libreOfficeSheets, python, read, values } from '../fixtures/xlsx.js'
import { listDir, tempDir } from '../helpers.js'

/** The workbook's bytes for these rows. */
async function workbook(rows: Iterable<object>, options: XlsxOptions = {}, internals?: XlsxInternals): Promise<Buffer> {
  const chunks: Buffer[] = []
  await pipeline(
    fromIterable(rows),
    internals ? new XlsxFormat(normalizeXlsxOptions(options), internals) : xlsx(options),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk)
        callback()
      },
    }),
  )
  return Buffer.concat(chunks)
}

describe('xlsx', () => {
  it('writes statement rows Excel opens as typed cells: a bold frozen header with an autofilter, column widths, dates as dates', async () => {
    const rows = [...statements(1000)]
    const bytes = await workbook(rows, { sheetName: 'Statements' })
    const book = await read(bytes)
    expect(book.worksheets.map((s) => s.name)).toEqual(['Statements'])
    const sheet = book.worksheets[0]!
    const [header, ...data] = values(sheet)
    expect(header).toEqual(['id', 'user_name', 'email', 'currency', 'amount', 'posted_at', 'memo'])
    expect(data).toEqual(rows.map((r) => [r.id, r.user_name, r.email, r.currency, r.amount, r.posted_at, r.memo === '' ? null : r.memo])) // exceljs reads an empty string as an empty cell
    expect(sheet.getCell('A1').font?.bold).toBe(true)
    expect(sheet.views[0]).toMatchObject({ state: 'frozen', ySplit: 1, topLeftCell: 'A2' })
    expect(sheet.autoFilter).toBe('A1:G1001')
    expect(sheet.getCell('F2').numFmt).toBe('yyyy-mm-dd hh:mm:ss')
    // A formula-looking memo stays text: inline strings are never formulas.
    expect(sheet.getCell('G6').value).toBe(rows[4]!.memo)
    expect(sheet.getCell('G6').formula).toBeUndefined()
    // Widths from the first rows: the e-mail column is wider than the currency column.
    expect(sheet.getColumn(3).width).toBeGreaterThan(20)
    expect(sheet.getColumn(4).width).toBe(10) // "currency" (8) + 2

    if (!libreOfficeHere()) return
    const dir = await tempDir()
    await writeFile(join(dir, 'statements.xlsx'), bytes)
    const [shown] = await libreOfficeSheets(join(dir, 'statements.xlsx'))
    // As a spreadsheet shows them: dates in the date-time format (LibreOffice cuts to the second), the formula-looking memo as text.
    const second = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().slice(0, 19).replace('T', ' ')
    expect(shown).toEqual([header, ...rows.map((r) => [String(r.id), r.user_name, r.email, r.currency, r.amount, second(r.posted_at), r.memo])])
  }, 120_000) // LibreOffice starts in 10-30 s on a loaded 2-core machine

  it('applies the value policy: exact numbers, big integers as text, booleans, empty cells, bytes, JSON, BSON', async () => {
    const row = {
      int: 42,
      float: -1.5e-7,
      huge: 2 ** 60, // past 2^53: Excel would keep 15 digits
      nan: Number.NaN,
      inf: -Infinity,
      small: 123n,
      big: 12345678901234567890n,
      yes: true,
      no: false,
      none: null,
      missing: undefined,
      bytes: Buffer.from([0, 255, 16]),
      doc: { a: [1, 2], big: 2n },
      dec: Decimal128.fromString('12345.678'),
      bigDec: Decimal128.fromString('1234567890.1234567890'),
      long: Long.fromString('9007199254740993'),
      oid: new ObjectId('65b2a3f1c2d4e5f601234567'),
      old: new Date('1899-12-31T00:00:00Z'),
      when: new Date('2026-11-23T10:20:30.456Z'),
      decimalLike: { toJSON: () => '3.14159265358979323846' },
    }
    const bytes = await workbook([row])
    const sheet = (await read(bytes)).worksheets[0]!
    const [header, cells] = values(sheet)
    const got = Object.fromEntries(header!.map((name, i) => [name, cells![i]]))
    expect(got).toEqual({
      int: 42,
      float: -1.5e-7,
      huge: '1152921504606847000', // as the CSV and JSON formats write it
      nan: 'NaN',
      inf: '-Infinity',
      small: 123,
      big: '12345678901234567890',
      yes: true,
      no: false,
      none: null,
      missing: null,
      bytes: 'AP8Q',
      doc: '{"a":[1,2],"big":"2"}',
      dec: 12345.678,
      bigDec: '1234567890.1234567890',
      long: '9007199254740993',
      oid: '65b2a3f1c2d4e5f601234567',
      old: '1899-12-31T00:00:00.000Z', // before Excel's dates: ISO text
      when: new Date('2026-11-23T10:20:30.456Z'),
      decimalLike: '3.14159265358979323846',
    })
    // Asked for, big numbers become numbers (Excel keeps 15 significant digits).
    const asNumbers = values((await read(await workbook([{ big: 12345678901234567890n, huge: 2 ** 60 }], { bigNumbers: 'number' }))).worksheets[0]!)
    expect(asNumbers[1]).toEqual([12345678901234567000, 2 ** 60])
  })

  it('a JS number past 15 significant digits is exact text, as a bigint is; bigNumbers: number keeps it a number', async () => {
    // Significant digits of the shortest round-trip text (String(n)), as Excel would cut them to 15.
    const long = [9007199254740991, 1234567890123456, -1234567890123456, 0.1234567890123456, 0.1 + 0.2, 1.2345678901234566e25]
    const short = [123456789012345, 0.1, 1e20, 1e25, 0.000001234, -1.5e-7]
    const row = Object.fromEntries([...long, ...short].map((n, i) => [`c${i}`, n]))
    const bytes = await workbook([row])
    const [, cells] = values((await read(bytes)).worksheets[0]!)
    expect(cells).toEqual([...long.map(String), ...short])
    const [, asNumbers] = values((await read(await workbook([row], { bigNumbers: 'number' }))).worksheets[0]!)
    expect(asNumbers).toEqual([...long, ...short])

    if (!libreOfficeHere()) return
    const dir = await tempDir()
    await writeFile(join(dir, 'digits.xlsx'), bytes)
    const [[, shown]] = (await libreOfficeSheets(join(dir, 'digits.xlsx'))) as [string[][]]
    expect(shown!.slice(0, long.length)).toEqual(long.map(String)) // every digit, as text
  }, 120_000) // LibreOffice starts in 10-30 s on a loaded 2-core machine

  it('keeps every character: controls and CR as OOXML escapes Excel and LibreOffice decode, text that looks like an escape escaped again', async () => {
    const tricky = ['a\u0001b\rc\r\nd\te\u001f', ' padded ', 'x\uD800y', '_x0041_ is not A', '<b>&amp;</b> "q" \'s\'', 'emoji 😀 and Zürich', '=1+1']
    const dir = await tempDir()
    const path = join(dir, 'tricky.xlsx')
    await exportStream({ source: fromIterable(tricky.map((text) => ({ text }))), format: xlsx(), sink: fileSink({ path }) })
    if (python) {
      const xml = entry(path, 'xl/worksheets/sheet1.xml')
      expect(xml).toContain('a_x0001_b_x000D_c_x000D_\nd\te_x001F_')
      expect(xml).toContain('x_xD800_y') // a lone surrogate, which UTF-8 cannot carry
      expect(xml).toContain('_x005F_x0041_ is not A')
      expect(xml).toContain('<t xml:space="preserve"> padded </t>')
      expect(xml).toContain('&lt;b&gt;&amp;amp;&lt;/b&gt; "q" \'s\'')
      expect(xml).toContain('<t>=1+1</t>') // text, never a formula
    }
    if (!libreOfficeHere()) return
    const [header, ...cells] = await libreOfficeSheets(path).then((sheets) => sheets[0]!)
    expect(header).toEqual(['text'])
    // LibreOffice keeps a line break as LF (a CR too) and cuts a cell at a lone surrogate (its own limit: checked in the XML above).
    const expected = tricky.map((text) => text.replace(/\r\n?/g, '\n'))
    expected[2] = 'x?'
    expect(cells.map(([text]) => text)).toEqual(expected)
  }, 120_000) // LibreOffice starts in 10-30 s on a loaded 2-core machine

  it('a cell longer than Excel allows is an ERR_FORMAT naming row and column, and no file is left; longText: truncate cuts it', async () => {
    const dir = await tempDir()
    const long = 'x'.repeat(32_768)
    const rows = [...statements(300)].map((r, i) => ({ ...r, memo: i === 250 ? long : r.memo }))
    const error = await exportStream({ source: fromIterable(rows), format: xlsx(), sink: fileSink({ path: join(dir, 'long.xlsx') }) }).catch((e) => e)
    expect(error).toMatchObject({ code: 'ERR_FORMAT', stage: 'format' })
    expect(error.message).toContain('Row 250, column "memo"')
    expect(error.message).toContain('32,768 characters')
    expect(await listDir(dir)).toEqual([])
    const cut = values((await read(await workbook([{ memo: long }, { memo: `${'y'.repeat(32_766)}😀` }], { longText: 'truncate' }))).worksheets[0]!)
    expect(cut[1]).toEqual(['x'.repeat(32_767)])
    expect(cut[2]).toEqual(['y'.repeat(32_766)]) // not half an emoji
  })

  it('a key the columns do not have is an ERR_FORMAT naming it, unless extraColumns: ignore', async () => {
    const rows = [{ a: 1 }, { a: 2, b: 3 }]
    await expect(workbook(rows)).rejects.toMatchObject({ code: 'ERR_FORMAT', message: expect.stringContaining('Row 1: a column the sheet does not have: "b"') })
    expect(values((await read(await workbook(rows, { extraColumns: 'ignore' }))).worksheets[0]!)).toEqual([['a'], [1], [2]])
    expect(values((await read(await workbook(rows, { columns: { b: 'B', a: 'A' } }))).worksheets[0]!)).toEqual([
      ['B', 'A'],
      [null, 1],
      [3, 2],
    ])
  })

  it('continues on a new sheet at the row limit, the header repeated, every row once and in order', async () => {
    const rows = [...statements(100)].map((r) => ({ id: r.id, memo: r.memo }))
    const book = await read(await workbook(rows, { sheetName: 'A sheet name of 31 characters!', maxRowsPerSheet: 40 }))
    expect(book.worksheets.map((s) => s.name)).toEqual(['A sheet name of 31 characters!', 'A sheet name of 31 characte (2)', 'A sheet name of 31 characte (3)'])
    const sheets = book.worksheets.map(values)
    for (const sheet of sheets) expect(sheet[0]).toEqual(['id', 'memo'])
    expect(sheets.flatMap((sheet) => sheet.slice(1).map(([id]) => id))).toEqual(rows.map((r) => r.id))
    expect(book.worksheets.map((s) => s.autoFilter)).toEqual(['A1:B41', 'A1:B41', 'A1:B21'])
    // Without a header, a sheet holds maxRowsPerSheet rows and nothing else.
    const plain = await read(await workbook(rows.slice(0, 5), { header: false, maxRowsPerSheet: 2 }))
    expect(plain.worksheets.map((s) => values(s).map(([id]) => id))).toEqual([[1, 2], [3, 4], [5]])
    expect(plain.worksheets[0]!.views[0]?.state).not.toBe('frozen')
  })

  it('zero rows: a header-only sheet when the columns are known, else an empty sheet; a workbook either way', async () => {
    const headerOnly = await read(await workbook([], { columns: ['id', { key: 'name', header: 'Name' }] }))
    expect(values(headerOnly.worksheets[0]!)).toEqual([['id', 'Name']])
    const empty = await read(await workbook([]))
    expect(empty.worksheets.length).toBe(1)
    expect(empty.worksheets[0]!.rowCount).toBe(0)
  })

  it.skipIf(!python)(`ZIP64 records (forced) read back by Python's zipfile and exceljs${python ? '' : ' (skipped: no python3)'}`, async () => {
    const rows = [...statements(2000)]
    const bytes = await workbook(rows, {}, { forceZip64: true })
    const dir = await tempDir()
    const path = join(dir, 'zip64.xlsx')
    await pipeline(fromIterable([bytes]), (await import('node:fs')).createWriteStream(path))
    expect(entry(path, '[Content_Types].xml')).toContain('spreadsheetml.worksheet+xml')
    expect(bytes.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(true) // the ZIP64 end record
    expect(values((await read(bytes)).worksheets[0]!).length).toBe(2001)
  })

  it('refuses gzip after it (the workbook is a ZIP already) and bad options before any output', async () => {
    const dir = await tempDir()
    await expect(
      exportStream({ source: fromIterable([{ a: 1 }]), format: xlsx(), gzip: true, sink: fileSink({ path: join(dir, 'a.xlsx.gz') }) }),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringContaining('compresses its own output (Parquet, XLSX)'),
    })
    expect(await listDir(dir)).toEqual([])
    expect(() => xlsx({ sheetName: 'a/b' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('sheetName') }))
    expect(() => xlsx({ maxRowsPerSheet: 1_048_576 })).toThrow('1,048,575')
    expect(() => xlsx({ header: false, maxRowsPerSheet: 1_048_577 })).toThrow('1,048,576')
    const wide = Object.fromEntries(Array.from({ length: 16_385 }, (_, i) => [`c${i}`, i]))
    await expect(workbook([wide])).rejects.toMatchObject({
      code: 'ERR_FORMAT',
      message: expect.stringContaining('16,385 columns: an Excel sheet holds 16,384'),
    })
  })

  it('split output: one workbook per part, each with its header, listed in the manifest', async () => {
    const dir = await tempDir()
    const result = await exportStream({
      source: fromIterable(statements(250)),
      format: xlsx(),
      sink: fileSink({ path: join(dir, 'statements.xlsx') }),
      split: { rows: 100 },
    })
    const manifest = JSON.parse(await readFile(join(dir, 'statements.manifest.json'), 'utf8')) as Manifest
    expect(manifest.parts.map((p) => p.name)).toEqual([1, 2, 3].map((n) => expect.stringMatching(new RegExp(`^statements-[0-9a-f]{8}-0000${n}\\.xlsx$`))))
    expect(await listDir(dir)).toEqual([...manifest.parts.map((p) => p.name), 'statements.manifest.json'])
    expect(manifest).toMatchObject({ format: 'xlsx', compression: 'none', rows: 250 })
    expect(manifest.parts.map((p) => p.rows)).toEqual([100, 100, 50])
    expect(result.rows).toBe(250)
    const ids: unknown[] = []
    for (const part of manifest.parts) {
      const [header, ...rows] = values((await read(await readFile(join(dir, part.name)))).worksheets[0]!)
      expect(header![0]).toBe('id')
      ids.push(...rows.map(([id]) => id))
    }
    expect(ids).toEqual([...statements(250)].map((r) => r.id))
  })
})

describe('xlsx: parts by size, and aborts', () => {
  it('split by bytes: each workbook within 64 KiB of the size (the compressor holds about that much), each whole', async () => {
    const dir = await tempDir()
    const SIZE = 300_000
    const result = await exportStream({
      source: fromIterable(statements(20_000)),
      format: xlsx(),
      sink: fileSink({ path: join(dir, 'rows.xlsx') }),
      split: { bytes: SIZE },
    })
    const parts = result.manifest!.parts
    expect(parts.length).toBeGreaterThanOrEqual(3)
    const ids: unknown[] = []
    for (const [i, part] of parts.entries()) {
      if (i < parts.length - 1) expect(Math.abs(part.bytes - SIZE)).toBeLessThan(64 * 1024)
      else expect(part.bytes).toBeLessThan(SIZE + 64 * 1024)
      const [header, ...rows] = values((await read(await readFile(join(dir, part.name)))).worksheets[0]!)
      expect(header![0]).toBe('id')
      ids.push(...rows.map(([id]) => id))
    }
    expect(ids).toEqual(Array.from({ length: 20_000 }, (_, i) => i + 1))
  })

  it('behind a slow sink it holds a bounded amount of work: the source waits', async () => {
    const format = xlsx()
    const seen: Array<[rows: number, bytes: number]> = [] // rows taken by the stage, bytes the sink had, at each write
    let received = 0
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        received += chunk.length
        seen.push([format.rows, received])
        setTimeout(callback, 2) // a slow upload
      },
    })
    await pipeline(fromIterable(statements(150_000)), format, sink)
    // Rows taken but not yet out as bytes, at the workbook's bytes per row: a few blocks' worth
    // (threads x 2 blocks of 256 KiB of XML, about 2,000 rows here), never the workbook.
    const bytesPerRow = received / 150_000
    const mostAhead = Math.max(...seen.map(([rows, bytes]) => rows - bytes / bytesPerRow))
    expect(mostAhead).toBeLessThan(15_000)
    expect(mostAhead).toBeGreaterThan(0)
  })

  it('an abort mid-export stops the compressor and leaves no file', async () => {
    const dir = await tempDir()
    const controller = new AbortController()
    async function* rows() {
      let i = 0
      for (const row of statements(1_000_000)) {
        if (i++ === 30_000) controller.abort()
        yield row
      }
    }
    const error = await exportStream({
      source: fromIterable(rows()),
      format: xlsx(),
      sink: fileSink({ path: join(dir, 'aborted.xlsx') }),
      signal: controller.signal,
    }).catch((e) => e)
    expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    expect(await listDir(dir)).toEqual([])
  })

  it('an abort after parts were uploaded to S3 leaves no object and no open upload', async () => {
    const s3 = await startS3()
    try {
      const controller = new AbortController()
      let taken = 0
      async function* rows() {
        for (const row of statements(1_000_000)) {
          if (++taken === 200_000) controller.abort(new Error('user cancelled')) // past the first 5 MiB part
          yield row
        }
      }
      const key = 'xlsx/aborted.xlsx'
      const error = await exportStream({
        source: fromIterable(rows()),
        format: xlsx(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * 1024 * 1024 }),
        signal: controller.signal,
      }).catch((e) => e)
      expect(error).toMatchObject({ code: 'ERR_ABORTED' })
      expect(s3.partsReceived.get(key)).toBeGreaterThanOrEqual(1) // it had started uploading
      expect(await s3.exists(key)).toBe(false)
      expect(await s3.openUploads()).toEqual([])
    } finally {
      await s3.close()
    }
  })
})

describe('xlsx from PostgreSQL', () => {
  const TABLE = 'se_xlsx_types'
  beforeAll(async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    await pool.query(`drop table if exists ${TABLE}`)
    await pool.query(
      `create table ${TABLE} (id int8, exact numeric(38,18), small numeric(5,2), loose numeric, at timestamptz, local_at timestamp, day date, flag bool, name text)`,
    )
    await pool.query(`set timezone = 'Europe/Paris'`)
    await pool.query(`insert into ${TABLE} values
      (9223372036854775807, 12345678901234567890.123456789012345678, 999.99, 'NaN', '2026-02-01 12:34:56.123456+01', '2026-02-01 12:34:56.5', '2026-02-01', true, 'Zürich'),
      (42, 1.5, -0.01, 123.25, 'infinity', '1900-03-01 00:00:00', '-infinity', false, ''),
      (1, null, null, null, null, null, null, null, null)`)
    await pool.end()
  })

  it('int8 and numeric beyond 15 digits as exact text, the rest as numbers; timestamptz as UTC dates, timestamp wall clock, date as dates', async () => {
    const dir = await tempDir()
    const path = join(dir, 'types.xlsx')
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    try {
      await exportStream({ source: postgresSource({ pool, text: `select * from ${TABLE} order by id desc` }), format: xlsx(), sink: fileSink({ path }) })
    } finally {
      await pool.end()
    }
    const sheet = (await read(await readFile(path))).worksheets[0]!
    expect(values(sheet)).toEqual([
      ['id', 'exact', 'small', 'loose', 'at', 'local_at', 'day', 'flag', 'name'],
      [
        '9223372036854775807',
        '12345678901234567890.123456789012345678',
        999.99,
        'NaN',
        new Date('2026-02-01T11:34:56.123Z'), // the instant, in UTC (exceljs reads dates to the millisecond)
        new Date('2026-02-01T12:34:56.500Z'), // the wall clock as written
        new Date('2026-02-01T00:00:00Z'),
        true,
        'Zürich',
      ],
      [42, 1.5, -0.01, 123.25, 'infinity', new Date('1900-03-01T00:00:00Z'), '-infinity', false, null], // exceljs reads '' as empty
      [1, null, null, null, null, null, null, null, null],
    ])
    expect(sheet.getCell('G2').numFmt).toBe('yyyy-mm-dd')
    expect(sheet.getCell('E2').numFmt).toBe('yyyy-mm-dd hh:mm:ss')
    if (python) {
      // Microseconds stay in the serial as far as a double holds them.
      const serial = Number(/<c r="E2" s="2"><v>([^<]+)<\/v>/.exec(entry(path, 'xl/worksheets/sheet1.xml'))![1])
      const expected = (Date.UTC(2026, 1, 1, 11, 34, 56) - Date.UTC(1899, 11, 30)) / 86_400_000 + 123.456 / 86_400_000
      expect(Math.abs(serial - expected) * 86_400_000_000).toBeLessThan(1) // under a microsecond
    }
  })
})
