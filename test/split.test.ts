// Split output on real PostgreSQL and the test S3 server: every part is read back alone by an
// independent reader, the manifest is checked against the bytes, and failures leave nothing.
import { createHash } from 'node:crypto'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { parse } from 'csv-parse/sync'
import { parquetReadObjects } from 'hyparquet'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  csv,
  exportStream,
  fileSink,
  jsonArray,
  jsonl,
  parquet,
  postgresKeysetSource,
  postgresSource,
  s3Sink,
  type Manifest,
  type Progress,
} from '../src/index.js'
import { BLOCK_SIZE } from '../src/stages/gzip.js'
import { databaseUrl, otherBackends } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

// Volume lives in bench/split.mjs: these rows prove the behaviour (several parts of each kind).
const ROWS = 400_000
const TABLE = `se_split_rows_${ROWS}`
const MB = 1_000_000

let pool: pg.Pool
let s3: TestS3
beforeAll(async () => {
  s3 = await startS3()
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 })
  const { rows } = await pool.query<{ n: string }>(`select count(*) as n from pg_tables where tablename = $1`, [TABLE])
  if (rows[0]!.n === '0') {
    // Ten hex digits a row: gzip halves them, so 400k rows are ~3.5 MB of gzip (several 1 MB parts).
    await pool.query(`create table if not exists ${TABLE} (id bigint primary key, code text not null)`)
    await pool.query(`insert into ${TABLE} select i, left(md5(i::text), 10) from generate_series(1, ${ROWS}) i on conflict do nothing`)
  }
}, 120_000)
afterAll(async () => {
  await s3.close()
  await pool.end()
})

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')
/** The ids of one CSV part read alone by csv-parse: it must start with its own header. */
function csvIds(text: Buffer): number[] {
  const [header, ...records] = parse(text) as string[][]
  expect(header).toEqual(['id', 'code'])
  return records.map((record) => Number(record[0]))
}
const source = (options: { where?: string; count?: 'exact' } = {}) =>
  postgresKeysetSource({
    pool,
    select: `select id, code from ${TABLE}${options.where ? ` where ${options.where}` : ''}`,
    key: 'id',
    batchSize: 10_000,
    count: options.count,
  })

/** Every part's ids, read alone, must continue where the previous part stopped: 1..n once each, in order. */
function expectIdsInOrder(parts: number[][], count: number, manifest: Manifest) {
  let next = 1
  parts.forEach((ids, i) => {
    const info = manifest.parts[i]!
    expect(ids.length).toBe(info.rows)
    expect(ids[0]).toBe(next)
    expect(ids.every((id, j) => id === next + j)).toBe(true)
    expect(info.firstKey).toBe(String(next)) // int8 keys are exact text
    expect(info.lastKey).toBe(String(next + ids.length - 1))
    next += ids.length
  })
  expect(next - 1).toBe(count)
  expect(manifest.rows).toBe(count)
}

describe('split exports', () => {
  it(`${ROWS.toLocaleString('en')} rows from Postgres into gzipped CSV files of 50,000 rows: each part gunzips and parses alone`, async () => {
    const dir = await tempDir()
    const result = await exportStream({
      source: source(),
      format: csv(),
      gzip: true,
      sink: fileSink({ path: join(dir, 'rows.csv.gz') }),
      split: { rows: 50_000 },
    })
    const manifest = JSON.parse(await readFile(join(dir, 'rows.manifest.json'), 'utf8')) as Manifest<{ path: string }>
    // Named after the sink's path and the run that wrote them: rows-<run>-00001.csv.gz ... -00008.
    const run = /^rows-([0-9a-f]{8})-00001\.csv\.gz$/.exec(manifest.parts[0]!.name)![1]
    const names = Array.from({ length: 8 }, (_, i) => `rows-${run}-0000${i + 1}.csv.gz`)
    expect(await readdir(dir)).toEqual([...names, 'rows.manifest.json'].sort())
    expect(manifest).toMatchObject({ version: 1, format: 'csv', compression: 'gzip', columns: ['id', 'code'], rows: ROWS })
    expect(result.manifest).toEqual(manifest)
    expect(result.location).toEqual({ path: join(dir, 'rows.manifest.json') })
    expect(manifest.parts.map((p) => p.name)).toEqual(names)
    const ids: number[][] = []
    for (const part of manifest.parts) {
      const bytes = await readFile(join(dir, part.name))
      expect(part).toMatchObject({ rows: 50_000, bytes: bytes.length, sha256: sha256(bytes), location: { path: join(dir, part.name) } })
      ids.push(csvIds(gunzipSync(bytes)))
    }
    expectIdsInOrder(ids, ROWS, manifest)
    expect(manifest.bytes).toBe(manifest.parts.reduce((sum, p) => sum + p.bytes, 0))
    expect(result.bytes).toBe(manifest.bytes)
  }, 120_000)

  it('the same rows into S3 objects of 1 MB of gzip: each within one row and one compression block of 1 MB', async () => {
    const key = 'split/rows.csv.gz'
    const result = await exportStream({
      source: source(),
      format: csv(),
      gzip: true,
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key }),
      split: { bytes: 1 * MB },
    })
    const manifest = JSON.parse((await getObject('split/rows.manifest.json')).toString()) as Manifest<{ bucket: string; key: string }>
    expect(result.manifest).toEqual(manifest)
    expect(manifest.parts.length).toBeGreaterThanOrEqual(3)
    // Slack: one row of CSV and one block of input at the worst ratio (incompressible).
    const slack = 64 + BLOCK_SIZE
    manifest.parts.forEach((part, i) => {
      expect(part.bytes).toBeLessThanOrEqual(1 * MB + slack)
      if (i < manifest.parts.length - 1) expect(part.bytes).toBeGreaterThanOrEqual(1 * MB - slack)
    })
    const ids: number[][] = []
    for (const part of manifest.parts) {
      expect(part.location).toMatchObject({ bucket: s3.bucket, key: `split/${part.name}` })
      const bytes = await getObject(part.location.key)
      expect(bytes.length).toBe(part.bytes)
      expect(sha256(bytes)).toBe(part.sha256)
      ids.push(csvIds(gunzipSync(bytes)))
    }
    expectIdsInOrder(ids, ROWS, manifest)
    expect(await s3.openUploads()).toEqual([])
  }, 120_000)

  it.each([
    [
      'jsonl',
      () => jsonl(),
      (bytes: Buffer) =>
        bytes
          .toString()
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as { id: string }),
    ],
    ['json', () => jsonArray(), (bytes: Buffer) => JSON.parse(bytes.toString()) as Array<{ id: string }>],
  ] as const)('%s parts are each valid alone', async (extension, format, read) => {
    const dir = await tempDir()
    const reports: Progress[] = []
    const result = await exportStream({
      source: source({ where: 'id <= 100000' }),
      format: format(),
      sink: fileSink({ path: join(dir, `rows.${extension}`) }),
      split: { rows: 30_000 },
      onProgress: (p) => void reports.push(p),
    })
    const manifest = result.manifest!
    // The last report comes once every part has landed: it counts them all.
    expect(reports.at(-1)).toMatchObject({ rows: 100_000, bytes: manifest.bytes, uncompressedBytes: manifest.bytes })
    expect(manifest.parts.map((p) => p.rows)).toEqual([30_000, 30_000, 30_000, 10_000])
    const ids = await Promise.all(manifest.parts.map(async (part) => read(await readFile(join(dir, part.name))).map((r) => Number(r.id))))
    expectIdsInOrder(ids, 100_000, manifest)
  })

  it('Parquet parts by size: one Parquet file per part, each read alone by hyparquet, with the schema of the first', async () => {
    const dir = await tempDir()
    const result = await exportStream({
      source: source({ where: 'id <= 300000' }),
      format: parquet({ rowGroupSize: 20_000 }),
      sink: fileSink({ path: join(dir, 'rows.parquet') }),
      split: { bytes: 1 * MB },
    })
    const manifest = result.manifest!
    expect(manifest.parts.length).toBeGreaterThanOrEqual(2)
    const ids: number[][] = []
    for (const [i, part] of manifest.parts.entries()) {
      const bytes = await readFile(join(dir, part.name))
      expect(sha256(bytes)).toBe(part.sha256)
      // Cut by an estimate of the row group being gathered: within one row group's size.
      if (i < manifest.parts.length - 1) expect(Math.abs(part.bytes - MB)).toBeLessThan(0.25 * MB)
      const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)
      const records = (await parquetReadObjects({ file })) as Array<{ id: bigint; code: string }>
      ids.push(records.map((r) => Number(r.id)))
    }
    expectIdsInOrder(ids, 300_000, manifest)
  })

  it('a source that fails in part 5 leaves no part, no manifest, and gives its connection back', async () => {
    const dir = await tempDir()
    const failing = postgresSource({ pool, text: `select id, code, 1 / (id - 220000) as boom from ${TABLE} order by id`, batchSize: 10_000 })
    const error = await exportStream({
      source: failing,
      format: csv(),
      gzip: true,
      sink: fileSink({ path: join(dir, 'out', 'rows.csv.gz') }),
      split: { rows: 50_000 },
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SOURCE' })
    expect((error as Error & { cause: { code: string } }).cause.code).toBe('22012') // division_by_zero
    expect(await readdir(dir)).toEqual([]) // the parts, and the folder the first one created, are gone
    expect(await otherBackends(pool).then((backends) => backends.filter((b) => b.state !== 'idle'))).toEqual([])
  }, 60_000)

  it('an abort mid-part leaves no object, no open upload and no manifest in S3', async () => {
    const controller = new AbortController()
    const prefix = 'split-abort/'
    const error = await exportStream({
      source: source({ where: 'id <= 300000' }),
      format: csv(),
      gzip: true,
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: `${prefix}rows.csv.gz`, partSize: 5 * 1024 * 1024 }),
      split: { rows: 100_000 },
      transform: (row: { id: string }) => {
        if (row.id === '250000') controller.abort(new Error('user cancelled'))
        return row
      },
      signal: controller.signal,
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))
    expect(listed.Contents ?? []).toEqual([])
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('the manifest is the commit point: an abort while S3 stores it resolves with every part; an abort just before leaves nothing', async () => {
    const run = (prefix: string, signal: AbortSignal, onLastProgress?: () => void) =>
      exportStream({
        source: source({ where: 'id <= 50000', count: 'exact' }), // 100% is the final report only
        format: jsonl(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: `${prefix}/rows.jsonl` }),
        split: { rows: 20_000 },
        signal,
        onProgress: (p) => void (p.percent === 100 && onLastProgress?.()),
      })
    const during = new AbortController()
    s3.inject({ op: 'PutObject', key: 'commit-during/rows.manifest.json', action: 'pass', delayMs: 300, onRequest: () => during.abort(new Error('too late')) })
    const landed = await run('commit-during', during.signal)
    expect(during.signal.aborted).toBe(true)
    expect(landed.location).toMatchObject({ key: 'commit-during/rows.manifest.json' })
    for (const part of landed.manifest!.parts) expect(await s3.exists(part.location.key)).toBe(true)

    // The last progress report comes after the last row, before the last part and the manifest.
    const before = new AbortController()
    const error = await run('commit-before', before.signal, () => before.abort(new Error('stop'))).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'commit-before/' }))
    expect(listed.Contents ?? []).toEqual([])
  })

  it('a throwing onProgress fails a split export with ERR_PROGRESS and leaves nothing', async () => {
    const dir = await tempDir()
    const error = await exportStream({
      source: source({ where: 'id <= 50000' }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'rows.csv') }),
      split: { rows: 10_000 },
      progressIntervalMs: 1,
      onProgress: (p) => {
        if (p.rows > 25_000) throw new Error('dashboard down')
      },
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PROGRESS' })
    expect(await readdir(dir)).toEqual([])
  })

  it('refuses what cannot be split, before any output', async () => {
    const dir = await tempDir()
    const sink = fileSink({ path: join(dir, 'x.csv') })
    const refused = (options: object) => exportStream({ source: [{ id: 1 }], format: csv(), sink, ...options }).catch((e: unknown) => e)
    expect(await refused({ split: {} })).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('split') })
    expect(await refused({ split: { rows: 0 } })).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('split.rows') })
    expect(await refused({ split: { rows: 1 }, sink: new (await import('node:stream')).PassThrough() })).toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringContaining('sink'),
    })
    expect(await readdir(dir)).toEqual([])
  })
})

async function getObject(key: string): Promise<Buffer> {
  const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
  return Buffer.from(await object.Body!.transformToByteArray())
}
