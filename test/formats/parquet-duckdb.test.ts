// A CSV file converted to Parquet on the encoder threads, read back by DuckDB and by hyparquet:
// both readers give every input value back, typed as declared (integers past 2^53, exact
// decimals as text, timestamps to the millisecond, dates, booleans and NULLs, hostile text).
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import { parquetReadObjects } from 'hyparquet'
import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { csv, csvSource, exportStream, fileSink, fromIterable, parquet } from '../../src/index.js'
import { collector, tempDir } from '../helpers.js'

const MEMOS = ['plain', 'with, comma', 'quote "x"', 'line\nbreak', 'emoji 😀 pair', '', ' lead space', 'Zürich ☕', '=1+2']

/** Row i as CSV text cells. */
function cells(i: number) {
  return {
    id: String(i),
    amount: `${((i * 37) % 100_000) - 50_000}.${String(i % 100).padStart(2, '0')}`,
    big: (2n ** 60n + BigInt(i) * 1_000_003n).toString(),
    flag: ['true', 'false', ''][i % 3]!,
    at: new Date(Date.UTC(2026, 0, 1) + i * 1_234_567).toISOString(),
    day: new Date(Date.UTC(2025, 0, 1 + (i % 700))).toISOString().slice(0, 10),
    ratio: String((i % 4000) / 8 - 100),
    memo: MEMOS[i % MEMOS.length]!,
  }
}

/** A value as text, for comparing what two readers give (bigints, Dates and numbers alike). */
const plain = (value: unknown): unknown => (value instanceof Date ? value.toISOString() : typeof value === 'bigint' ? value.toString() : value)

describe('CSV -> Parquet read back by DuckDB and hyparquet', () => {
  it('every value of 30,000 rows, typed as declared, from both readers', async () => {
    const dir = await tempDir()
    const input = join(dir, 'in.csv')
    const output = join(dir, 'out.parquet')
    const rows = Array.from({ length: 30_000 }, (_, i) => cells(i))
    const text = collector()
    await exportStream({ source: fromIterable(rows), format: csv(), sink: text })
    await writeFile(input, text.buffer())
    const types = { id: 'integer', amount: 'numeric', big: 'bigint', flag: 'boolean', at: 'timestamp', day: 'date', ratio: 'number' } as const
    const result = await exportStream({
      source: csvSource({ path: input, types }),
      format: parquet({ workers: 2, rowGroupSize: 4000 }),
      sink: fileSink({ path: output }),
    })
    expect(result.rows).toBe(30_000)
    const expected = rows.map((row) => ({
      ...row,
      flag: row.flag === '' ? null : row.flag === 'true',
      day: `${row.day}T00:00:00.000Z`,
      ratio: Number(row.ratio),
    }))

    const bytes = await readFile(output)
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer
    const hyparquet = (await parquetReadObjects({ file })) as Array<Record<string, unknown>>
    expect(hyparquet.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, plain(v)])))).toEqual(expected)

    const instance = await DuckDBInstance.create(':memory:')
    const connection = await instance.connect()
    try {
      const reader = await connection.runAndReadAll(`SELECT * FROM read_parquet('${output}') ORDER BY id`)
      const duck = reader.getRowObjectsJS()
      expect(duck.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, plain(v)])))).toEqual(expected)
      const described = await connection.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${output}')`)
      expect(Object.fromEntries(described.getRowObjectsJS().map((row) => [row.column_name, row.column_type]))).toEqual({
        id: 'BIGINT',
        amount: 'VARCHAR',
        big: 'BIGINT',
        flag: 'BOOLEAN',
        at: 'TIMESTAMP WITH TIME ZONE',
        day: 'DATE',
        ratio: 'DOUBLE',
        memo: 'VARCHAR',
      })
    } finally {
      connection.closeSync()
      instance.closeSync()
    }
  }, 60_000)
})
