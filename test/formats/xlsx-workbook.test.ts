// One workbook of several sheets (exportWorkbook): each sheet from its own source, with its own
// columns, types and row limit, read back by exceljs, Python's zipfile and LibreOffice; the
// sources read one after another; bad options, a failing sheet and an abort leave nothing.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exportWorkbook, fileSink, postgresCopySource, postgresSource, type ExportError, type Progress } from '../../src/index.js'
import { runCli } from '../fixtures/cli.js'
import { databaseUrl } from '../fixtures/postgres.js'
import { entry, libreOfficeBook, libreOfficeHere, python, read, values } from '../fixtures/xlsx.js'
import { listDir, tempDir } from '../helpers.js'

const TABLE = 'se_workbook_statements'
let pool: pg.Pool

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.query(`create table ${TABLE} (id int8 primary key, customer text not null, amount numeric(12,2) not null, posted_at timestamptz not null)`)
  await pool.query(`insert into ${TABLE}
    select n, (array['acme','Zürich AG','globex'])[n % 3 + 1], (n * 7 % 1000) / 4.0, timestamptz '2026-01-01 00:00:00Z' + n * interval '1 hour'
    from generate_series(1, 300) n`)
})
afterAll(() => pool?.end())

/** Errors of an export that must fail. */
async function failure(run: Promise<unknown>): Promise<ExportError> {
  const error = (await run.then(
    () => undefined,
    (e: unknown) => e,
  )) as ExportError | undefined
  if (!error) throw new Error('the export did not fail')
  return error
}

describe('exportWorkbook', () => {
  it('writes each sheet from its own source: its name, columns, header, widths, types and autofilter; progress over every sheet', async () => {
    const dir = await tempDir()
    const path = join(dir, 'statements.xlsx')
    const reports: Progress[] = []
    const result = await exportWorkbook({
      sheets: [
        {
          name: 'Summary',
          source: postgresSource({ pool, text: `select customer, sum(amount) as total, count(*) as n from ${TABLE} group by 1 order by 1`, count: 'exact' }),
        },
        { name: 'Statements', source: postgresSource({ pool, text: `select * from ${TABLE} order by id`, count: 'exact' }) },
        // Made when its turn comes; its columns renamed, its rows through a transform.
        {
          name: 'Notes',
          source: () => [{ note: 'closed early', by: 'ops' }, { note: 'drop me' }, { note: 'reopened', by: 'finance' }],
          columns: { note: 'Note', by: 'Who' },
          transform: (row: { note: string }, index: number) => (row.note === 'drop me' ? undefined : { ...row, note: `${index}: ${row.note}` }),
        },
        // No rows: the header from the query's columns.
        { name: 'Refunds', source: postgresSource({ pool, text: `select id, amount from ${TABLE} where false`, count: 'exact' }) },
      ],
      sink: fileSink({ path }),
      onProgress: (p) => void reports.push(p),
    })
    expect(result.rows).toBe(3 + 300 + 2)
    expect(result.sheets).toEqual([
      { name: 'Summary', rows: 3, sheets: ['Summary'] },
      { name: 'Statements', rows: 300, sheets: ['Statements'] },
      { name: 'Notes', rows: 2, sheets: ['Notes'] },
      { name: 'Refunds', rows: 0, sheets: ['Refunds'] },
    ])
    // (A sheet made when its turn comes has no count to add: no total then.)
    expect(reports.at(-1)).toMatchObject({ rows: 305 })

    const book = await read(await readFile(path))
    expect(book.worksheets.map((s) => s.name)).toEqual(['Summary', 'Statements', 'Notes', 'Refunds'])
    const [summary, detail, notes, refunds] = book.worksheets as [
      ReturnType<typeof book.getWorksheet> & object,
      ...Array<ReturnType<typeof book.getWorksheet> & object>,
    ]
    const { rows: sums } = await pool.query<{ customer: string; total: string; n: string }>(
      `select customer, sum(amount)::text as total, count(*)::text as n from ${TABLE} group by 1 order by 1`,
    )
    expect(values(summary)).toEqual([['customer', 'total', 'n'], ...sums.map((r) => [r.customer, Number(r.total), Number(r.n)])])
    const detailRows = values(detail!)
    expect(detailRows[0]).toEqual(['id', 'customer', 'amount', 'posted_at'])
    expect(detailRows).toHaveLength(301)
    expect(detailRows[1]).toEqual([1, 'Zürich AG', 1.75, new Date('2026-01-01T01:00:00Z')])
    expect(detail!.getCell('D2').numFmt).toBe('yyyy-mm-dd hh:mm:ss') // timestamptz: a date on this sheet only
    expect(values(notes!)).toEqual([
      ['Note', 'Who'],
      ['0: closed early', 'ops'],
      ['2: reopened', 'finance'],
    ])
    expect(values(refunds!)).toEqual([['id', 'amount']])
    // Each sheet its own autofilter and widths.
    expect([summary.autoFilter, detail!.autoFilter, notes!.autoFilter, refunds!.autoFilter]).toEqual(['A1:C4', 'A1:D301', 'A1:B3', 'A1:B1'])
    expect(detail!.getColumn(4).width).toBe(21) // a date-time (19) + 2
    expect(notes!.getColumn(1).width).toBe(17) // "0: closed early" (15) + 2
    if (python) {
      // The workbook's filter ranges, one per sheet (what Excel checks against each sheet's autofilter).
      const names = [...entry(path, 'xl/workbook.xml').matchAll(/localSheetId="(\d)" hidden="1">([^<]+)</g)].map((m) => [m[1], m[2]])
      expect(names).toEqual([
        ['0', "'Summary'!$A$1:$C$4"],
        ['1', "'Statements'!$A$1:$D$301"],
        ['2', "'Notes'!$A$1:$B$3"],
        ['3', "'Refunds'!$A$1:$B$1"],
      ])
    }
    if (!libreOfficeHere()) return
    const shown = await libreOfficeBook(path)
    expect([...shown.keys()].sort()).toEqual(['Notes', 'Refunds', 'Statements', 'Summary'])
    expect(shown.get('Statements')![1]).toEqual(['1', 'Zürich AG', '1.75', '2026-01-01 01:00:00'])
    expect(shown.get('Notes')).toEqual([
      ['Note', 'Who'],
      ['0: closed early', 'ops'],
      ['2: reopened', 'finance'],
    ])
  }, 120_000) // LibreOffice starts in 10-30 s on a loaded 2-core machine

  it('totals the sources’ counts for progress when every source counts', async () => {
    const reports: Progress[] = []
    const dir = await tempDir()
    await exportWorkbook({
      sheets: [
        { name: 'A', source: postgresSource({ pool, text: `select id from ${TABLE} where id <= 100`, count: 'exact' }) },
        { name: 'B', source: postgresSource({ pool, text: `select id from ${TABLE} where id > 100`, count: 'exact' }) },
      ],
      sink: fileSink({ path: join(dir, 'ab.xlsx') }),
      onProgress: (p) => void reports.push(p),
    })
    expect(reports.at(-1)).toMatchObject({ rows: 300, totalRows: 300, percent: 100 })
  })

  it('continues each sheet at the row limit under a name no sheet has or was given; every row once, in order', async () => {
    const dir = await tempDir()
    const path = join(dir, 'limit.xlsx')
    const rows = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ tag, i }))
    const result = await exportWorkbook({
      sheets: [
        { name: 'Detail', source: rows(7, 'd') },
        { name: 'detail (2)', source: rows(2, 'x') }, // the name Detail's second sheet would take (Excel ignores case)
        { name: 'Empty', source: [], columns: ['tag', 'i'] },
      ],
      xlsx: { maxRowsPerSheet: 3 },
      sink: fileSink({ path }),
    })
    expect(result.sheets).toEqual([
      { name: 'Detail', rows: 7, sheets: ['Detail', 'Detail (3)', 'Detail (4)'] },
      { name: 'detail (2)', rows: 2, sheets: ['detail (2)'] },
      { name: 'Empty', rows: 0, sheets: ['Empty'] },
    ])
    const book = await read(await readFile(path))
    expect(book.worksheets.map((s) => s.name)).toEqual(['Detail', 'Detail (3)', 'Detail (4)', 'detail (2)', 'Empty'])
    const data = book.worksheets.map((sheet) => values(sheet))
    expect(data.map((sheet) => sheet[0])).toEqual(Array(5).fill(['tag', 'i']))
    expect(data.slice(0, 3).flatMap((sheet) => sheet.slice(1))).toEqual(rows(7, 'd').map((r) => [r.tag, r.i]))
    expect(data[3]!.slice(1)).toEqual(rows(2, 'x').map((r) => [r.tag, r.i]))
    expect(book.worksheets.map((s) => s.autoFilter)).toEqual(['A1:B4', 'A1:B4', 'A1:B2', 'A1:B3', 'A1:B1'])
  })

  it('reads the sources one after another: a sheet’s source is not read before the sheet before it has ended', async () => {
    const events: string[] = []
    async function* rows(tag: string, n: number) {
      for (let i = 0; i < n; i++) {
        events.push(`${tag}${i}`)
        yield { tag, i }
      }
      events.push(`${tag} end`)
    }
    const dir = await tempDir()
    await exportWorkbook({
      sheets: [
        { name: 'A', source: rows('a', 3) },
        { name: 'B', source: rows('b', 2) },
      ],
      sink: fileSink({ path: join(dir, 'order.xlsx') }),
    })
    expect(events).toEqual(['a0', 'a1', 'a2', 'a end', 'b0', 'b1', 'b end'])
  })

  it('refuses bad options before any source is read, and gives back the connections the sources took', async () => {
    const cases: Array<[string, (source: () => Readable) => object, string]> = [
      ['no sheets', () => ({ sheets: [] }), '`sheets`'],
      ['a name Excel refuses', (s) => ({ sheets: [{ name: 'a/b', source: s() }] }), '`sheets[0].name`'],
      [
        'a name twice (case aside)',
        (s) => ({
          sheets: [
            { name: 'Data', source: s() },
            { name: 'DATA', source: s() },
          ],
        }),
        '`sheets[1].name`',
      ],
      ['a sheet option unknown', (s) => ({ sheets: [{ name: 'A', source: s(), colums: ['a'] }] }), '`colums`'],
      ['a sheet name in xlsx', (s) => ({ sheets: [{ name: 'A', source: s() }], xlsx: { sheetName: 'B' } }), '`xlsx.sheetName`'],
      ['split', (s) => ({ sheets: [{ name: 'A', source: s() }], split: { rows: 10 } }), '`split`'],
      ['gzip', (s) => ({ sheets: [{ name: 'A', source: s() }], gzip: true }), '`gzip`'],
      ['bad columns', (s) => ({ sheets: [{ name: 'A', source: s(), columns: [] }] }), '`sheets[0].columns`'],
      ['a COPY source', () => ({ sheets: [{ name: 'A', source: postgresCopySource({ pool, text: `select 1` }) }] }), '`sheets[0].source`'],
    ]
    const dir = await tempDir()
    for (const [what, options, named] of cases) {
      const sources: Readable[] = []
      const source = () => {
        const s = postgresSource({ pool, text: `select * from ${TABLE}` })
        sources.push(s)
        return s
      }
      const error = await failure(exportWorkbook({ ...options(source), sink: fileSink({ path: join(dir, 'bad.xlsx') }) } as never))
      expect({ what, code: error.code }).toEqual({ what, code: 'ERR_INVALID_OPTION' })
      expect(error.message, what).toContain(named)
      expect(sources.every((s) => s.destroyed)).toBe(true)
    }
    expect(await listDir(dir)).toEqual([])
    // Every connection back in the pool, and usable.
    await expect.poll(() => pool.totalCount - pool.idleCount).toBe(0)
    expect((await pool.query('select 1 as one')).rows).toEqual([{ one: 1 }])
  })

  it('a sheet whose source fails mid-way: ERR_SOURCE naming the sheet, no file, every source closed', async () => {
    const dir = await tempDir()
    const path = join(dir, 'failed.xlsx')
    await writeFile(path, 'the previous workbook')
    const third = postgresSource({ pool, text: `select * from ${TABLE}` })
    const error = await failure(
      exportWorkbook({
        sheets: [
          { name: 'Fine', source: postgresSource({ pool, text: `select * from ${TABLE} order by id` }) },
          // Division by zero at row 2000 of 3000: after rows were written.
          { name: 'Broken', source: () => postgresSource({ pool, text: 'select n, 1 / (n - 2000) as x from generate_series(1, 3000) n', batchSize: 100 }) },
          { name: 'Never', source: third },
        ],
        sink: fileSink({ path }),
      }),
    )
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.message).toMatch(/^Sheet "Broken": .*division by zero/)
    expect(third.destroyed).toBe(true)
    expect(await readFile(path, 'utf8')).toBe('the previous workbook')
    expect(await listDir(dir)).toEqual(['failed.xlsx'])
    await expect.poll(() => pool.totalCount - pool.idleCount).toBe(0)
  })

  it('an abort while a sheet streams: ERR_ABORTED, no file, the sheets after it closed unread', async () => {
    const dir = await tempDir()
    const controller = new AbortController()
    let made = false
    async function* slow() {
      for (let i = 0; ; i++) {
        if (i === 500) controller.abort(new Error('the user cancelled'))
        yield { i }
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    const later = postgresSource({ pool, text: `select * from ${TABLE}` })
    const error = await failure(
      exportWorkbook({
        sheets: [
          { name: 'Slow', source: slow() },
          { name: 'Later', source: later },
          {
            name: 'Lazy',
            source: () => {
              made = true
              return []
            },
          },
        ],
        sink: fileSink({ path: join(dir, 'aborted.xlsx') }),
        signal: controller.signal,
      }),
    )
    expect(error.code).toBe('ERR_ABORTED')
    expect(later.destroyed).toBe(true)
    expect(made).toBe(false)
    expect(await listDir(dir)).toEqual([])
    await expect.poll(() => pool.totalCount - pool.idleCount).toBe(0)
  })

  it('a later sheet whose source fails before its turn (a refused connection) fails the workbook then, named for it: no crash, no file', async () => {
    const dir = await tempDir()
    async function* slow() {
      for (let i = 0; i < 400; i++) {
        await new Promise((resolve) => setTimeout(resolve, 2))
        yield { i }
      }
    }
    const refused = postgresSource({ connectionString: 'postgres://postgres@127.0.0.1:1/test', text: 'select 1' })
    const error = await failure(
      exportWorkbook({
        sheets: [
          { name: 'Slow', source: slow() },
          { name: 'Refused', source: refused },
        ],
        sink: fileSink({ path: join(dir, 'refused.xlsx') }),
      }),
    )
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.message).toMatch(/^Sheet "Refused": .*ECONNREFUSED/)
    expect(await listDir(dir)).toEqual([])
  })

  it('a source function that returns a promise is refused naming the sheet, and what it resolves to is closed; a bad option closes the sink too', async () => {
    const dir = await tempDir()
    let late: Readable | undefined
    const error = await failure(
      exportWorkbook({
        sheets: [
          { name: 'A', source: [{ a: 1 }] },
          {
            name: 'B',
            source: (async () => (late = postgresSource({ pool, text: `select * from ${TABLE}` }))) as never,
          },
        ],
        sink: fileSink({ path: join(dir, 'promise.xlsx') }),
      }),
    )
    expect(error.code).toBe('ERR_INVALID_OPTION')
    expect(error.message).toContain('`sheets[1].source`')
    await expect.poll(() => late?.destroyed).toBe(true)
    await expect.poll(() => pool.totalCount - pool.idleCount).toBe(0)
    expect(await listDir(dir)).toEqual([])
    const sink = fileSink({ path: join(dir, 'bad.xlsx') })
    expect((await failure(exportWorkbook({ sheets: [{ name: 'a:b', source: [] }], sink }))).code).toBe('ERR_INVALID_OPTION')
    expect(sink.destroyed).toBe(true)
  })

  it('a long name continued at the row limit is never cut inside a character', async () => {
    const dir = await tempDir()
    const path = join(dir, 'emoji.xlsx')
    const name = `${'x'.repeat(26)}😀yy` // 30 UTF-16 units: " (2)" leaves room for 27, the 27th half of the emoji
    const result = await exportWorkbook({ sheets: [{ name, source: [{ a: 1 }, { a: 2 }] }], xlsx: { maxRowsPerSheet: 1 }, sink: fileSink({ path }) })
    expect(result.sheets[0]!.sheets).toEqual([name, `${'x'.repeat(26)} (2)`])
    const book = await read(await readFile(path))
    expect(book.worksheets.map((s) => s.name)).toEqual([name, `${'x'.repeat(26)} (2)`])
  })

  it('the CLI: several --query NAME=SQL (inline, @file) write one workbook, a sheet each; what it cannot do is refused (exit 2); a failing sheet exits 3 and leaves no file', async () => {
    const dir = await tempDir()
    const path = join(dir, 'report.xlsx')
    await writeFile(join(dir, 'detail.sql'), `select id, customer, amount from ${TABLE} where id <= 5 order by id`)
    const done = await runCli([
      '--from',
      databaseUrl(),
      '--to',
      path,
      '--query',
      `Summary=select count(*) as n from ${TABLE}`,
      '--query',
      `Detail=@${join(dir, 'detail.sql')}`,
    ])
    expect(done.code, done.stderr).toBe(0)
    expect(done.stderr).toMatch(/^6 rows .*\n$/) // the progress: every sheet's rows
    expect(done.stdout).toContain('exported 6 rows')
    expect(done.stdout).toContain('  Summary: 1 rows\n  Detail: 5 rows\n')
    const book = await read(await readFile(path))
    expect(book.worksheets.map((s) => s.name)).toEqual(['Summary', 'Detail'])
    expect(values(book.worksheets[0]!)).toEqual([['n'], [300]])
    expect(values(book.worksheets[1]!).slice(0, 2)).toEqual([
      ['id', 'customer', 'amount'],
      [1, 'Zürich AG', 1.75],
    ])

    const refusals: Array<[string[], string]> = [
      [['--to', join(dir, 'x.csv')], 'several --query write one workbook, a sheet each: the format is csv'],
      [['--to', join(dir, 'x.xlsx'), '--split-rows', '10'], '--split-rows is not available with several --query'],
      [['--to', join(dir, 'x.xlsx'), '--columns', 'a'], '--columns is not available with several --query'],
      [['--to', join(dir, 'x.xlsx'), '--collection', 'c'], '--collection is not available with several --query'],
    ]
    for (const [args, message] of refusals) {
      const refused = await runCli(['--from', databaseUrl(), '--query', 'A=select 1', '--query', 'B=select 2', ...args])
      expect({ code: refused.code, stderr: refused.stderr }).toEqual({ code: 2, stderr: expect.stringContaining(message) as unknown })
    }
    const unnamed = await runCli(['--from', databaseUrl(), '--query', 'select 1', '--query', 'B=select 2', '--to', join(dir, 'x.xlsx')])
    expect(unnamed.code).toBe(2)
    expect(unnamed.stderr).toContain('several --query name a sheet each: expected NAME=SQL, got "select 1"')
    const badName = await runCli(['--from', databaseUrl(), '--query', 'A/B=select 1', '--query', 'C=select 2', '--to', join(dir, 'x.xlsx')])
    expect(badName.code).toBe(2)
    expect(badName.stderr).toContain('sheets[0].name')

    const failed = await runCli([
      '--from',
      databaseUrl(),
      '--to',
      join(dir, 'failed.xlsx'),
      '--query',
      'Fine=select 1 as one',
      '--query',
      'Broken=select 1 / 0 as x',
    ])
    expect(failed.code).toBe(3)
    expect(failed.stderr).toMatch(/ERR_SOURCE: Sheet "Broken": .*division by zero/)
    expect(await listDir(dir)).toEqual(['detail.sql', 'report.xlsx'])
  })
})
