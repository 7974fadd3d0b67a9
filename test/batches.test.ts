import { Readable, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  csv,
  ExportError,
  exportStream,
  fromIterable,
  isRowBatch,
  jsonl,
  mapRows,
  parquet,
  postgresKeysetSource,
  postgresSource,
  rowBatch,
  type Row,
} from '../src/index.js'
import { createStatements, databaseUrl, testPool } from './fixtures/postgres.js'
import { collector, exportedBytes, expectSameBytes } from './helpers.js'

const TABLE = 'se_batch_statements'
const ROWS = 5_000

beforeAll(async () => {
  const setup = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await createStatements(setup, TABLE, ROWS)
  await setup.end()
})

function* numbered(n: number) {
  for (let i = 0; i < n; i++) yield { i, text: `row ${i}, "quoted"` }
}

/** Every chunk a source hands on, batches as they come. */
async function chunksOf(source: Readable & { sendBatches?(): void }, batches: boolean): Promise<unknown[]> {
  if (batches) source.sendBatches!()
  return source.toArray()
}

const rowsOf = (chunks: unknown[]): unknown[] => chunks.flatMap((chunk): unknown[] => (isRowBatch(chunk) ? [...chunk.rows] : [chunk]))

/** A format stage that is not this library's: it takes rows and records what it was given. */
function recordingFormat(seen: unknown[]): Transform {
  return new Transform({
    writableObjectMode: true,
    transform(row, _encoding, callback) {
      seen.push(row)
      callback(null, `${JSON.stringify(row)}\n`)
    },
  })
}

describe('rows in batches between our own stages', () => {
  it('fromIterable: a synchronous iterable in batches of up to 500 rows once asked, rows otherwise; an async one row by row', async () => {
    const batched = await chunksOf(fromIterable(numbered(1_234)), true)
    expect(batched.map((chunk) => (isRowBatch(chunk) ? chunk.rows.length : 'row'))).toEqual([500, 500, 234])
    expect(rowsOf(batched)).toEqual([...numbered(1_234)])
    const rows = await chunksOf(fromIterable(numbered(3)), false)
    expect(rows).toEqual([...numbered(3)])

    async function* slow() {
      yield { a: 1 }
      await new Promise((resolve) => setTimeout(resolve, 5))
      yield { a: 2 }
    }
    expect(await chunksOf(fromIterable(slow()), true)).toEqual([{ a: 1 }, { a: 2 }])
  })

  it('fromIterable: a promise among the rows is awaited; a null row fails the source instead of ending it early', async () => {
    expect(rowsOf(await chunksOf(fromIterable([{ a: 1 }, Promise.resolve({ a: 2 }), { a: 3 }] as object[]), true))).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }])
    for (const batches of [false, true]) {
      const failed = chunksOf(fromIterable([{ a: 1 }, null, { a: 3 }] as object[]), batches)
      await expect(failed).rejects.toThrow(ExportError)
      await expect(failed).rejects.toMatchObject({ code: 'ERR_SOURCE', message: 'Row 1 is null: rows are objects' })
    }
  })

  it('exportStream hands batches to our formats and transforms (the same bytes as rows one by one), rows to a format of your own', async () => {
    const transform = [(row: Row) => (Number(row.i) % 7 === 3 ? undefined : row), async (row: Row, index: number) => ({ ...row, index })]
    for (const format of [() => csv(), () => jsonl()]) {
      const stages = format()
      const seen: boolean[] = []
      const write = stages._transform.bind(stages)
      stages._transform = (chunk, encoding, callback) => {
        seen.push(isRowBatch(chunk))
        write(chunk, encoding, callback)
      }
      const sink = collector()
      const result = await exportStream({ source: numbered(2_000), transform, format: stages, sink })
      // One by one, as a pipeline of these stages without exportStream reads them.
      const oneByOne = collector()
      await pipeline(fromIterable(numbered(2_000)), mapRows(transform), format(), oneByOne)
      expectSameBytes(sink.buffer(), oneByOne.buffer())
      expect(result.rows).toBe(2_000 - 286)
      expect(seen.length).toBeGreaterThan(0)
      expect(seen.every(Boolean)).toBe(true)
    }
    const seen: unknown[] = []
    await exportStream({ source: numbered(1_200), format: recordingFormat(seen), sink: collector() })
    expect(seen).toEqual([...numbered(1_200)])
  })

  it('a row that cannot be encoded inside a batch is named by its index; a transform failure too', async () => {
    const rows = [...numbered(1_000)] as unknown[]
    rows[702] = 42
    await expect(exportStream({ source: rows as object[], format: csv(), sink: collector() })).rejects.toMatchObject({
      code: 'ERR_FORMAT',
      message: 'Expected row 702 to be an object, got `42` (number)',
    })
    const failing = (row: Row) => {
      if (row.i === 901) throw new Error('no')
      return row
    }
    await expect(exportStream({ source: numbered(1_000), transform: failing, format: jsonl(), sink: collector() })).rejects.toMatchObject({
      code: 'ERR_TRANSFORM',
      message: 'Transform failed on row 901: no',
    })
  })

  it('mapRows: a batch leaves as a batch of the rows kept, in order, with source indexes; an all-dropped batch sends nothing', async () => {
    const stage = mapRows([(row: Row, index: number) => (index % 2 ? undefined : { ...row, index }), (row: Row) => Promise.resolve(row)])
    const out = await Readable.from([rowBatch([{ a: 0 }, { a: 1 }, { a: 2 }]), { a: 3 }, rowBatch([{ a: 4 }]), rowBatch([{ a: 5 }])], { objectMode: true })
      .pipe(stage)
      .toArray()
    expect(out).toEqual([
      rowBatch([
        { a: 0, index: 0 },
        { a: 2, index: 2 },
      ]),
      rowBatch([{ a: 4, index: 4 }]),
    ])
  })

  it('postgresSource: a page of the cursor per batch; postgresKeysetSource: a page per batch, its checkpoint the last row handed on', async () => {
    const pool = testPool()
    const cursor = postgresSource({ pool, text: `select id from ${TABLE} order by id`, batchSize: 700 })
    const pages = await chunksOf(cursor, true)
    expect(pages.map((chunk) => isRowBatch(chunk) && chunk.rows.length)).toEqual([...Array(7).fill(700), 100])
    expect(rowsOf(pages).map((row) => Number((row as Row).id))).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1))

    const keyset = postgresKeysetSource({ pool, table: TABLE, key: 'id', batchSize: 1_000 })
    keyset.sendBatches!()
    const handedOn: Row[] = []
    for await (const chunk of keyset) {
      expect(isRowBatch(chunk)).toBe(true)
      handedOn.push(...(chunk as { rows: Row[] }).rows)
      expect(keyset.checkpoint).toBe(handedOn.at(-1)!.id)
    }
    expect(handedOn.length).toBe(ROWS)
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('Parquet takes batches: the same file as rows one by one', async () => {
    const batched = await exportedBytes({ source: numbered(3_000), format: parquet({ rowGroupSize: 1_000 }) })
    const oneByOne = collector()
    await pipeline(fromIterable(numbered(3_000)), parquet({ rowGroupSize: 1_000 }), oneByOne)
    expectSameBytes(batched, oneByOne.buffer())
  })

  it('a plain Writable sink and any object-mode Readable source still work (nothing asks them for batches)', async () => {
    const rows = Readable.from([...numbered(600)], { objectMode: true })
    const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() })
    expect((await exportStream({ source: rows, format: csv(), sink })).rows).toBe(600)
  })
})
