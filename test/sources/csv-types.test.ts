// Typed CSV input: CSV -> JSON Lines (or Parquet) keeps what the cells mean (`false` a boolean, an
// empty cell NULL) without ever changing a value: declared types fail on a cell that is not of the
// type, naming it; inferred types convert only cells of the type's exact form.
import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { csvSource, ExportError, jsonl, parquet } from '../../src/index.js'
import { exportedBytes } from '../helpers.js'

const csvText = [
  'id,paid,amount,price,at,day,tags,code,note',
  '1,false,12.5,19.990,2026-11-30T10:00:00Z,2026-11-30,"[""a""]",007,',
  '2,TRUE,-3,0.1,2026-11-30 11:30:00.250+01,2026-02-28,{},010,""',
  '9007199254740993,true,1e3,1234567890.123456789,2026-11-30T10:00:00.5-05:30,2024-02-29,null,1,x',
].join('\n')

const rows = (text: string, options: object) => csvSource({ stream: Readable.from([Buffer.from(text)]), ...options }).toArray()

describe('csvSource types', () => {
  it('declared types: each cell the value its column says, exactly; an empty cell NULL, a quoted "" an empty string with empty: null', async () => {
    const got = await rows(csvText, {
      types: { id: 'integer', paid: 'boolean', amount: 'number', price: 'numeric', at: 'timestamp', day: 'date', tags: 'json', code: 'text', note: 'text' },
      empty: 'null',
    })
    expect(got).toEqual([
      { id: 1, paid: false, amount: 12.5, price: '19.990', at: new Date('2026-11-30T10:00:00Z'), day: '2026-11-30', tags: ['a'], code: '007', note: null },
      { id: 2, paid: true, amount: -3, price: '0.1', at: new Date('2026-11-30T10:30:00.250Z'), day: '2026-02-28', tags: {}, code: '010', note: '' },
      {
        id: 9007199254740993n,
        paid: true,
        amount: 1000,
        price: '1234567890.123456789',
        at: new Date('2026-11-30T15:30:00.500Z'),
        day: '2024-02-29',
        tags: null,
        code: '1',
        note: 'x',
      },
    ])
  })

  it('a cell that is not of its declared type fails the export with ERR_SOURCE naming line, column and cell; so does a number a JS number cannot hold', async () => {
    const bad = async (text: string, types: object) => (await rows(text, { types }).catch((e: unknown) => e)) as ExportError
    const notBoolean = await bad('id,paid\n1,true\n2,maybe\n', { paid: 'boolean' })
    expect(notBoolean).toBeInstanceOf(ExportError)
    expect(notBoolean).toMatchObject({ code: 'ERR_SOURCE', message: 'Line 3, column "paid": "maybe" is not a boolean (true, false, t, f)' })
    expect((await bad('n\n0.1000000000000000055511151231257827\n', { n: 'number' })).message).toContain('has more digits than a JS number holds')
    expect((await bad('n\n007\n', { n: 'integer' })).message).toContain('"007" is not an integer')
    expect((await bad('t\n2026-11-30T10:00:00\n', { t: 'timestamp' })).message).toContain('with a zone')
    expect((await bad('d\n2026-02-30\n', { d: 'date' })).message).toContain('is not a date')
    // A misspelt column in `types` would leave its column text: refused, naming it.
    expect(await bad('id,paid\n1,true\n', { piad: 'boolean' })).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('"piad"') })
  })

  it('infer: types from a sample; a later cell not of the form (007, 1e3 in an integer column) stays its text, never a changed value', async () => {
    const text = [
      'id,paid,amount,code,at,note',
      '1,false,1.5,12,2026-11-30T10:00:00Z,a',
      '2,true,2,34,2026-12-01T00:00:00+02:00,',
      '3,false,2.25,007,soon,b',
    ].join('\n')
    const got = await rows(text, { types: 'infer', inferRows: 2 })
    expect(got).toEqual([
      { id: 1, paid: false, amount: 1.5, code: 12, at: new Date('2026-11-30T10:00:00Z'), note: 'a' },
      { id: 2, paid: true, amount: 2, code: 34, at: new Date('2026-11-30T22:00:00Z'), note: '' },
      { id: 3, paid: false, amount: 2.25, code: '007', at: 'soon', note: 'b' },
    ])
    // t / f alone, leading zeros, exponents: text unless declared.
    expect(await rows('grade,zip,e\nt,01234,1e3\nf,02134,2e3\n', { types: 'infer' })).toEqual([
      { grade: 't', zip: '01234', e: 1000 },
      { grade: 'f', zip: '02134', e: 2000 },
    ])
  })

  it('CSV -> JSON Lines with inferred types writes booleans, numbers and nulls, not strings', async () => {
    const source = csvSource({ stream: Readable.from([Buffer.from('id,paid,note\n1,false,\n2,true,"x"\n')]), types: 'infer', empty: 'null' })
    expect((await exportedBytes({ source, format: jsonl() })).toString()).toBe('{"id":1,"paid":false,"note":null}\n{"id":2,"paid":true,"note":"x"}\n')
  })

  it('CSV -> Parquet with inferred types: typed columns (INT64, BOOLEAN, TIMESTAMP), values read back', async () => {
    const source = csvSource({
      stream: Readable.from([Buffer.from('id,paid,at\n1,true,2026-11-30T10:00:00Z\n2,false,2026-12-01T10:00:00Z\n')]),
      types: 'infer',
    })
    const bytes = await exportedBytes({ source, format: parquet() })
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer
    expect(await parquetReadObjects({ file, compressors })).toEqual([
      { id: 1n, paid: true, at: new Date('2026-11-30T10:00:00Z') },
      { id: 2n, paid: false, at: new Date('2026-12-01T10:00:00Z') },
    ])
  })

  it('CSV -> Parquet with some columns declared: the others are text columns, in the file order', async () => {
    const source = csvSource({ stream: Readable.from([Buffer.from('id,paid,note\n1,true,a\n')]), types: { paid: 'boolean' } })
    const bytes = await exportedBytes({ source, format: parquet() })
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer
    expect(await parquetReadObjects({ file, compressors })).toEqual([{ id: '1', paid: true, note: 'a' }])
  })

  it('refuses bad type options before reading: an unknown type, types with cast, a bad empty', () => {
    const stream = () => Readable.from([Buffer.from('a\n1\n')])
    expect(() => csvSource({ stream: stream(), types: { a: 'int' as never } })).toThrow(/`types.a`/)
    expect(() => csvSource({ stream: stream(), types: 'infer', cast: true })).toThrow(/cast/)
    expect(() => csvSource({ stream: stream(), empty: 'none' as never })).toThrow(/`empty`/)
    expect(() => csvSource({ stream: stream(), types: 'infer', inferRows: 0 })).toThrow(/`inferRows`/)
  })
})
