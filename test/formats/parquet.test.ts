import { GetObjectCommand } from '@aws-sdk/client-s3'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parquetMetadata, parquetReadObjects, type FileMetaData } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { ObjectId } from 'mongodb'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { exportStream, fileSink, fromIterable, parquet, postgresSource, s3Sink, type ColumnType } from '../../src/index.js'
import { databaseUrl, testPool } from '../fixtures/postgres.js'
import { startS3, type TestS3 } from '../fixtures/s3-server.js'
import { collector, listDir, tempDir } from '../helpers.js'

const TABLE = 'se_parquet_types'

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.query(`create table ${TABLE} (id int8 not null, exact numeric(38,18), small numeric(5,2), at timestamptz, local_at timestamp,
    day date, flag bool, name text, bytes bytea, doc jsonb, n int4, ratio float8, loose numeric)`)
  await pool.query(`insert into ${TABLE} values
    (9223372036854775807, 12345678901234567890.123456789012345678, 999.99, '2026-02-01 12:34:56.123456+00', '2026-02-01 12:34:56.5',
     '2026-02-01', true, 'Zürich, "quoted"', '\\x00ff10', '{"a": [1, 2], "big": 12345678901234567890}', 42, 0.1, 1e-30),
    (-9223372036854775808, -0.000000000000000001, -0.01, '1969-12-31 23:59:59.999999+00', '1900-01-01 00:00:00',
     '1900-02-28', false, '', '\\x', '[]', -2147483648, -1.5e300, 123456789012345678901234567890.5),
    (1, null, null, null, null, null, null, null, null, null, null, null, null)`)
  await pool.end()
})

const arrayBuffer = (buffer: Buffer) => buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length) as ArrayBuffer

/** Rows as hyparquet decodes them, plus raw (unconverted) values for exact DECIMAL and TIMESTAMP checks. */
async function readBack(buffer: Buffer) {
  const file = arrayBuffer(buffer)
  const metadata = parquetMetadata(file)
  const rows = (await parquetReadObjects({ file, compressors })) as Array<Record<string, unknown>>
  // The same file read with the logical types stripped from the schema: the stored integers and bytes.
  const bare: FileMetaData = { ...metadata, schema: metadata.schema.map((e) => ({ ...e, converted_type: undefined, logical_type: undefined })) }
  const raw = (await parquetReadObjects({ file, metadata: bare, compressors, utf8: false })) as Array<Record<string, unknown>>
  return { metadata, rows, raw }
}

/** A big-endian two's complement FIXED_LEN_BYTE_ARRAY as a bigint. */
function unscaled(bytes: unknown): bigint {
  const b = bytes as Uint8Array
  let value = 0n
  for (const byte of b) value = (value << 8n) | BigInt(byte)
  return b[0] & 0x80 ? value - (1n << BigInt(b.length * 8)) : value
}

let s3: TestS3
beforeAll(async () => {
  s3 = await startS3()
})
afterAll(() => s3.close())

describe('parquet', () => {
  it('writes Postgres columns with exact types, read back by hyparquet', async () => {
    const pool = testPool()
    const sink = collector()
    const result = await exportStream({ source: postgresSource({ pool, text: `select * from ${TABLE} order by id desc` }), format: parquet(), sink })
    expect(result.rows).toBe(3)
    const { metadata, rows, raw } = await readBack(sink.buffer())
    const schema = Object.fromEntries(metadata.schema.slice(1).map((e) => [e.name, e]))
    expect(schema.id).toMatchObject({ type: 'INT64', repetition_type: 'OPTIONAL' })
    expect(schema.exact).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', converted_type: 'DECIMAL', precision: 38, scale: 18 })
    expect(schema.small).toMatchObject({ converted_type: 'DECIMAL', precision: 5, scale: 2 })
    expect(schema.at).toMatchObject({ type: 'INT64', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' } })
    expect(schema.local_at).toMatchObject({ type: 'INT64', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: false, unit: 'MICROS' } })
    expect(schema.day).toMatchObject({ type: 'INT32', converted_type: 'DATE' })
    expect(schema.flag).toMatchObject({ type: 'BOOLEAN' })
    expect(schema.name).toMatchObject({ type: 'BYTE_ARRAY', converted_type: 'UTF8' })
    expect(schema.bytes).toMatchObject({ type: 'BYTE_ARRAY' })
    expect(schema.doc).toMatchObject({ type: 'BYTE_ARRAY', converted_type: 'JSON', logical_type: { type: 'JSON' } })
    expect(schema.n).toMatchObject({ type: 'INT32' })
    expect(schema.ratio).toMatchObject({ type: 'DOUBLE' })
    expect(schema.loose).toMatchObject({ type: 'BYTE_ARRAY', converted_type: 'UTF8' }) // unconstrained numeric: exact text

    const [max, one, min] = rows
    const [rawMax, , rawMin] = raw
    expect(max.id).toBe(9223372036854775807n)
    expect(min.id).toBe(-9223372036854775808n)
    expect(unscaled(rawMax.exact)).toBe(12345678901234567890123456789012345678n) // 18 digits after the point, exact
    expect(unscaled(rawMin.exact)).toBe(-1n)
    expect(unscaled(rawMax.small)).toBe(99999n)
    expect(rawMax.at).toBe(BigInt(Date.UTC(2026, 1, 1, 12, 34, 56, 123)) * 1000n + 456n) // microseconds kept
    expect(rawMin.at).toBe(-1n)
    expect(rawMax.local_at).toBe(BigInt(Date.UTC(2026, 1, 1, 12, 34, 56, 500)) * 1000n)
    expect(max.day).toEqual(new Date('2026-02-01T00:00:00Z'))
    expect(min.day).toEqual(new Date('1900-02-28T00:00:00Z'))
    expect([max.flag, min.flag]).toEqual([true, false])
    expect([max.name, min.name]).toEqual(['Zürich, "quoted"', ''])
    expect(Buffer.from(rawMax.bytes as Uint8Array)).toEqual(Buffer.from([0, 255, 16])) // hyparquet reads bare BYTE_ARRAY as text by default
    expect(max.doc).toEqual({ a: [1, 2], big: 12345678901234567000 })
    expect([max.n, min.n]).toEqual([42, -2147483648])
    expect([max.ratio, min.ratio]).toEqual([0.1, -1.5e300])
    expect(min.loose).toBe('123456789012345678901234567890.5')
    for (const [key, value] of Object.entries(one)) if (key !== 'id') expect(value, key).toBeNull()
  })

  it('infers types from the first row group when neither schema nor source gives them', async () => {
    const sink = collector()
    const oid = new ObjectId('65b2f0c0a1b2c3d4e5f60718')
    const rows = [
      { s: null, n: 1.5, b: 10n, t: true, at: new Date('2026-01-01T00:00:00.001Z'), bin: Buffer.from('hi'), nested: { a: [1] }, id: oid },
      { s: 'later', n: 2, b: -3n, t: false, at: null, bin: null, nested: null, id: oid },
    ]
    await exportStream({ source: rows, format: parquet(), sink })
    const { metadata, rows: back } = await readBack(sink.buffer())
    expect(metadata.schema.slice(1).map((e) => [e.name, e.type, e.converted_type ?? e.logical_type?.type])).toEqual([
      ['s', 'BYTE_ARRAY', 'UTF8'], // the first non-null value decides
      ['n', 'DOUBLE', undefined],
      ['b', 'INT64', undefined],
      ['t', 'BOOLEAN', undefined],
      ['at', 'INT64', 'TIMESTAMP_MICROS'],
      ['bin', 'BYTE_ARRAY', undefined],
      ['nested', 'BYTE_ARRAY', 'JSON'],
      ['id', 'BYTE_ARRAY', 'UTF8'],
    ])
    expect(back[0]).toMatchObject({
      s: null,
      n: 1.5,
      b: 10n,
      t: true,
      at: new Date('2026-01-01T00:00:00.001Z'),
      nested: { a: [1] },
      id: '65b2f0c0a1b2c3d4e5f60718',
    })
    expect(back[1]).toMatchObject({ s: 'later', n: 2, b: -3n, at: null, nested: null })
  })

  it('writes 25,000 rows with rowGroupSize 10,000 as 3 row groups', async () => {
    const sink = collector()
    const result = await exportStream({ source: fromIterable(statements(25_000)), format: parquet({ rowGroupSize: 10_000, rowGroupBytes: 1e9 }), sink })
    expect(result.rows).toBe(25_000)
    const metadata = parquetMetadata(arrayBuffer(sink.buffer()))
    expect(metadata.row_groups.map((g) => Number(g.num_rows))).toEqual([10_000, 10_000, 5_000])
    expect(Number(metadata.num_rows)).toBe(25_000)
    expect(sink.chunks).toBeGreaterThanOrEqual(3) // each row group left the stage before the next was gathered
  })

  it('ends a row group at rowGroupBytes of values: wide rows make smaller groups, memory bounded whatever the width', async () => {
    const sink = collector()
    // 8 (a number) + 1,000 characters a row: 100,000 bytes are reached at the 100th row of a group.
    const rows = Array.from({ length: 3000 }, (_, i) => ({ id: i, body: `${i}`.padEnd(1000, '.') }))
    await exportStream({ source: fromIterable(rows), format: parquet({ rowGroupBytes: 100_000 }), sink })
    const metadata = parquetMetadata(arrayBuffer(sink.buffer()))
    expect(metadata.row_groups.map((g) => Number(g.num_rows))).toEqual(Array(30).fill(100))
    const back = (await parquetReadObjects({ file: arrayBuffer(sink.buffer()) })) as Array<{ id: number; body: string }>
    expect(back.map((r) => r.id)).toEqual(rows.map((r) => r.id))
    // The default (1 MB of values) cuts narrow statement rows into groups of about 10,000.
    const narrow = collector()
    await exportStream({ source: fromIterable(statements(30_000)), format: parquet(), sink: narrow })
    const groups = parquetMetadata(arrayBuffer(narrow.buffer())).row_groups.map((g) => Number(g.num_rows))
    expect(groups.length).toBeGreaterThanOrEqual(3)
    expect(groups.slice(0, -1).every((n) => n > 5_000 && n < 15_000)).toBe(true)
    expect(() => parquet({ rowGroupBytes: 0 })).toThrow('Expected `rowGroupBytes` to be a positive integer')
  })

  it('writes every codec', async () => {
    const schema: ColumnType[] = [
      { name: 'id', type: 'INT64' },
      { name: 'memo', type: 'STRING' },
      { name: 'amount', type: 'DECIMAL', precision: 12, scale: 2 },
    ]
    for (const codec of ['SNAPPY', 'GZIP', 'ZSTD', 'UNCOMPRESSED'] as const) {
      const sink = collector()
      await exportStream({ source: fromIterable(statements(3000)), format: parquet({ schema, codec, rowGroupSize: 1000 }), sink })
      const { metadata, rows } = await readBack(sink.buffer())
      expect(metadata.row_groups[0].columns[0].meta_data?.codec).toBe(codec)
      expect(rows).toHaveLength(3000)
      expect(rows[2999]).toMatchObject({ id: 3000n })
    }
  })

  it('zero rows: a valid file with the schema', async () => {
    const pool = testPool()
    const sink = collector()
    await exportStream({ source: postgresSource({ pool, text: `select id, exact, at from ${TABLE} where false` }), format: parquet(), sink })
    const { metadata, rows } = await readBack(sink.buffer())
    expect(rows).toEqual([])
    expect(metadata.schema.slice(1).map((e) => e.name)).toEqual(['id', 'exact', 'at'])
    expect(Number(metadata.num_rows)).toBe(0)

    const explicit = collector()
    await exportStream({ source: [], format: parquet({ schema: [{ name: 'a', type: 'DOUBLE', nullable: false }] }), sink: explicit })
    expect(parquetMetadata(arrayBuffer(explicit.buffer())).schema[1]).toMatchObject({ name: 'a', type: 'DOUBLE', repetition_type: 'REQUIRED' })
  })

  it('a value that does not fit the schema: ERR_FORMAT naming row and column, nothing left behind', async () => {
    const dir = await tempDir()
    const rows = Array.from({ length: 1500 }, (_, i) => ({ id: i === 1234 ? 'x12' : String(i), amount: '1.50' }))
    const schema: ColumnType[] = [
      { name: 'id', type: 'INT64' },
      { name: 'amount', type: 'DECIMAL', precision: 4, scale: 2 },
    ]
    const error = await exportStream({ source: rows, format: parquet({ schema, rowGroupSize: 1000 }), sink: fileSink({ path: join(dir, 'x.parquet') }) }).catch(
      (e) => e,
    )
    expect(error.code).toBe('ERR_FORMAT')
    expect(error.message).toBe('Row 1234, column "id" (INT64): expected a 64-bit integer, got `"x12"` (string)')
    expect(await listDir(dir)).toEqual([])

    const tooPrecise = await exportStream({ source: [{ id: 1, amount: '1.234' }], format: parquet({ schema }), sink: collector() }).catch((e) => e)
    expect(tooPrecise.message).toBe('Row 0, column "amount" (DECIMAL): expected at most 2 digits after the point (decimal(4,2)), got `"1.234"` (string)')
    const notNull = await exportStream({
      source: [{ id: null, amount: '1' }],
      format: parquet({ schema: [{ name: 'id', type: 'INT64', nullable: false }] }),
      sink: collector(),
    }).catch((e) => e)
    expect(notNull.message).toBe('Row 0, column "id" (INT64): expected a value (the column is not nullable), got `null` (null)')
  })

  it("a partitioned export's finished files let go of their buffers: 400 partitions hold under 40 MB", async () => {
    // The export keeps each partition's writer (and so its format) until the manifest: a format
    // that kept its file's 1 MB writer, or a group's bytes in a 1 MB buffer, held 2 MB a partition.
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const dir = await tempDir()
    gc()
    const before = process.memoryUsage().arrayBuffers
    let held = 0
    function* rows() {
      for (let i = 0; i < 10_000; i++) yield { account: `a${String(Math.floor(i / 25)).padStart(3, '0')}`, id: i, memo: `memo ${i}` }
      gc() // every row is in, the last partitions may still be closing
      held = process.memoryUsage().arrayBuffers - before
    }
    const result = await exportStream({
      source: fromIterable(rows()),
      format: parquet({ workers: 0 }),
      sink: fileSink({ path: join(dir, '{account}.parquet') }),
      partitionBy: 'account',
    })
    expect(result.partitions).toHaveLength(400)
    const manifest = JSON.parse(await readFile(join(dir, 'partitions.manifest.json'), 'utf8')) as { parts: Array<{ name: string }> }
    const last = arrayBuffer(await readFile(join(dir, manifest.parts.find((part) => part.name.startsWith('a399'))!.name)))
    expect(await parquetReadObjects({ file: last })).toEqual(
      Array.from({ length: 25 }, (_, k) => ({ account: 'a399', id: 9975 + k, memo: `memo ${9975 + k}` })),
    )
    expect(held).toBeLessThan(40 * 1024 * 1024)
  }, 60_000)

  it('refuses gzip on top: Parquet compresses inside', async () => {
    const error = await exportStream({ source: [{ a: 1 }], format: parquet(), gzip: true, sink: collector() }).catch((e) => e)
    expect(error.code).toBe('ERR_INVALID_OPTION')
    expect(error.message).toContain('Expected `gzip` to be off for a format that compresses its own output (Parquet, XLSX)')
  })

  it('Postgres -> parquet -> S3, end to end', async () => {
    const pool = testPool()
    const key = 'parquet/statements.parquet'
    const result = await exportStream({
      source: postgresSource({
        pool,
        text: `select i as id, (i * 1.25)::numeric(12,2) as amount, timestamptz '2026-02-01 00:00:00+00' + i * interval '1 second' as at from generate_series(1, 20000) i`,
      }),
      format: parquet({ rowGroupSize: 5000 }),
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key }),
    })
    const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
    expect(object.ContentType).toBe('application/vnd.apache.parquet')
    expect(object.ContentEncoding).toBeUndefined()
    const body = Buffer.from(await object.Body!.transformToByteArray())
    expect(body.length).toBe(result.bytes)
    const { metadata, rows } = await readBack(body)
    expect(metadata.row_groups).toHaveLength(4)
    expect(rows).toHaveLength(20_000)
    expect(rows[19_999]).toEqual({ id: 20000, amount: 25000, at: new Date(Date.UTC(2026, 1, 1) + 20_000_000) })
  })

  it('writes a file with fileSink', async () => {
    const dir = await tempDir()
    const path = join(dir, 'rows.parquet')
    await exportStream({ source: [{ a: 'x' }], format: parquet(), sink: fileSink({ path }) })
    expect((await readBack(await readFile(path))).rows).toEqual([{ a: 'x' }])
  })

  it('validates its options', () => {
    expect(() => parquet({ codec: 'LZ4' as never })).toThrow('Expected `codec` to be one of `SNAPPY`, `ZSTD`, `GZIP`, `UNCOMPRESSED`')
    expect(() => parquet({ rowGroupSize: 0 })).toThrow('Expected `rowGroupSize` to be a positive integer')
    expect(() => parquet({ schema: [{ name: 'a', type: 'DECIMAL' }] })).toThrow('Expected `schema[0].precision` to be an integer from 1 to 76')
    expect(() => parquet({ schema: [{ name: 'a', type: 'TEXT' as never }] })).toThrow('Expected `schema[0].type` to be one of')
  })
})
