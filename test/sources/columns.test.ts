// Every column of a source is kept: repeated names (joins) are renamed, numbers by type stay
// numbers in CSV's Excel mode, and a zero-row result still has its header.
import { Readable } from 'node:stream'
import { parse } from 'csv-parse/sync'
import { parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { describe, expect, it } from 'vitest'
import { csv, csvSource, exportStream, jsonl, parquet, postgresKeysetSource, postgresSource } from '../../src/index.js'
import { collector } from '../helpers.js'
import { testPool } from '../fixtures/postgres.js'
import { uniqueColumnNames } from '../../src/sources/column-names.js'

const exportText = async (options: Omit<Parameters<typeof exportStream>[0], 'sink'>) => {
  const sink = collector()
  await exportStream({ ...options, sink })
  return sink.buffer().toString('utf8')
}

describe('repeated column names', () => {
  it('are renamed name_2, name_3..., skipping names the result has', () => {
    expect(uniqueColumnNames(['id', 'a', 'id', 'a', 'a_2', 'id'])).toEqual(['id', 'a', 'id_2', 'a_3', 'a_2', 'id_3'])
    expect(uniqueColumnNames(['x', 'y'])).toEqual(['x', 'y'])
  })

  it('postgresSource keeps both columns of a join in CSV, JSONL and Parquet', async () => {
    const pool = testPool()
    const join = `select a.*, b.* from (values (1, 'left')) as a(id, v), (values (2, 'right')) as b(id, v)`
    expect(await exportText({ source: postgresSource({ pool, text: join }), format: csv() })).toBe('id,v,id_2,v_2\n1,left,2,right\n')
    expect(await exportText({ source: postgresSource({ pool, text: 'select 1 as a, 2 as a' }), format: jsonl() })).toBe('{"a":1,"a_2":2}\n')
    const sink = collector()
    await exportStream({ source: postgresSource({ pool, text: join }), format: parquet(), sink })
    const bytes = sink.buffer()
    const rows = await parquetReadObjects({ file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer, compressors })
    expect(rows).toEqual([{ id: 1, v: 'left', id_2: 2, v_2: 'right' }])
  })

  it('postgresKeysetSource keeps both columns of a join', async () => {
    const pool = testPool()
    const select = `select a.id, a.v, b.id as "b", b.v from (values (1, 'left'), (2, 'l2')) as a(id, v), (values (7, 'right')) as b(id, v)`
    expect(await exportText({ source: postgresKeysetSource({ pool, select, batchSize: 1 }), format: csv() })).toBe('id,v,b,v_2\n1,left,7,right\n2,l2,7,right\n')
  })

  it('csvSource keeps a repeated header name', async () => {
    const file = Readable.from([Buffer.from('id,name,name\n1,a,b\n')])
    expect(await exportText({ source: csvSource({ stream: file }), format: jsonl() })).toBe('{"id":"1","name":"a","name_2":"b"}\n')
  })
})

describe('Excel mode never rewrites a number by type', () => {
  it('negative numeric, int8 and float values from Postgres stay numbers; text is still escaped', async () => {
    const pool = testPool()
    const text = `select -42.50::numeric as amount, -42.50::numeric(10,2) as fixed, -9007199254740993::int8 as big, -1.5::float8 as f, -7 as i, '-x'::text as note, '=1+1' as formula`
    const out = await exportText({ source: postgresSource({ pool, text }), format: csv({ excel: true }) })
    const [record] = parse(out, { columns: true, bom: true, relax_quotes: true }) as Array<Record<string, string>>
    expect(record).toEqual({ amount: '-42.50', fixed: '-42.50', big: '-9007199254740993', f: '-1.5', i: '-7', note: "'-x", formula: "'=1+1" })
  })
})

describe('zero rows', () => {
  it('a Postgres query that returns no row still writes the CSV header', async () => {
    const pool = testPool()
    const text = `select 1 as id, 'x' as name where false`
    expect(await exportText({ source: postgresSource({ pool, text }), format: csv() })).toBe('id,name\n')
    expect(await exportText({ source: postgresSource({ pool, text }), format: csv({ excel: true }) })).toBe('\ufeffid,name\r\n')
    expect(await exportText({ source: postgresSource({ pool, text }), format: csv({ header: false }) })).toBe('')
  })
})
