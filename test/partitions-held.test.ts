// Small partitions are written whole (src/parts/held-part.ts): their rows encoded as they come and
// held, then compressed and stored in one go; a partition that grows past what is held gets its
// stages, the held bytes first. Tried against the export of each partition's rows alone.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, exportStream, fileSink, fromIterable, jsonArray, jsonl, s3Sink, type ExportError, type Row } from '../src/index.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

let s3: TestS3
beforeAll(async () => {
  s3 = await startS3()
})
afterAll(() => s3.close())

// 'big' is ~700 KB of text (past the 256 KiB held), 'edge' just under it, 'tiny' one row.
const memo = (i: number) => `memo ${i} ${'x'.repeat(90)} "quoted", ünïcödé ✓`
const rowsOf = (customer: string, count: number): Row[] => Array.from({ length: count }, (_, i) => ({ customer, id: i, memo: memo(i), amount: i * 1.25 }))
const partitions: Record<string, Row[]> = { big: rowsOf('big', 5000), edge: rowsOf('edge', 1700), tiny: rowsOf('tiny', 1) }

describe('partitions written whole, and one that grows past what is held', () => {
  for (const [name, format, gzip] of [
    ['csv + gzip', csv, true],
    ['jsonl', jsonl, false],
    ['json array + gzip', jsonArray, true],
  ] as const) {
    it(`${name}: each partition's file holds exactly what exporting its rows alone writes`, async () => {
      const dir = await tempDir()
      const ext = gzip ? '.out.gz' : '.out'
      const result = await exportStream({
        source: fromIterable(Object.values(partitions).flat()),
        format: format(),
        gzip,
        sink: fileSink({ path: join(dir, `parts/{customer}${ext}`) }),
        partitionBy: 'customer',
      })
      expect(result.parts!.map((part) => [part.partition!.customer, part.rows])).toEqual([
        ['big', 5000],
        ['edge', 1700],
        ['tiny', 1],
      ])
      const bytes = (file: Buffer) => (gzip ? gunzipSync(file) : file)
      for (const part of result.parts!) {
        const alone = join(dir, `${String(part.partition!.customer)}${ext}`)
        await exportStream({ source: fromIterable(partitions[String(part.partition!.customer)]!), format: format(), gzip, sink: fileSink({ path: alone }) })
        expect(bytes(await readFile(join(dir, 'parts', part.name))).equals(bytes(await readFile(alone)))).toBe(true)
      }
      const big = result.parts!.find((part) => part.partition!.customer === 'big')!
      expect(bytes(await readFile(join(dir, 'parts', big.name))).length).toBeGreaterThan(512 * 1024)
    })
  }

  it('a row that cannot be encoded while held is ERR_FORMAT naming its row, and nothing is left', async () => {
    const dir = await tempDir()
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const error = (await exportStream({
      source: fromIterable([...partitions.tiny!, { customer: 'edge', id: 0 }, { customer: 'edge', id: 1, data: circular }]),
      format: jsonl(),
      sink: fileSink({ path: join(dir, '{customer}.jsonl') }),
      partitionBy: 'customer',
    }).catch((e: unknown) => e)) as ExportError
    expect(error).toMatchObject({ code: 'ERR_FORMAT', message: expect.stringContaining('Cannot encode row 1') })
    expect(await readdir(dir)).toEqual([])
  })

  it('an abort while a finished partition is being compressed whole: ERR_ABORTED, nothing left, nothing uncaught', async () => {
    const uncaught: unknown[] = []
    const listener = (error: unknown) => void uncaught.push(error)
    process.on('uncaughtException', listener)
    process.on('unhandledRejection', listener)
    try {
      for (let round = 0; round < 20; round++) {
        const dir = await tempDir()
        const controller = new AbortController()
        async function* rows() {
          yield* rowsOf('a', 300) // 'a' finishes when 'b' begins (maxOpen 1): compressed in one call
          yield { customer: 'b', id: 0, memo: 'm', amount: 0 }
          for (let turn = 0; turn < round % 5; turn++) await new Promise((resolve) => setImmediate(resolve))
          controller.abort(new Error('stop'))
          yield { customer: 'b', id: 1, memo: 'm', amount: 1 }
        }
        const error = (await exportStream({
          source: fromIterable(rows()),
          format: csv(),
          gzip: true,
          sink: fileSink({ path: join(dir, 'out/{customer}.csv.gz') }),
          partitionBy: { by: 'customer', maxOpen: 1 },
          signal: controller.signal,
        }).catch((e: unknown) => e)) as ExportError
        expect(error.code).toBe('ERR_ABORTED')
        expect(await readdir(dir)).toEqual([])
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(uncaught).toEqual([])
    } finally {
      process.off('uncaughtException', listener)
      process.off('unhandledRejection', listener)
    }
  })

  it('S3: an abort while a small partition is being stored whole leaves no object and no upload', async () => {
    const controller = new AbortController()
    s3.inject({
      op: 'PutObject',
      match: (key) => key.startsWith('held/edge-'),
      delayMs: 300,
      action: 'pass',
      onRequest: () => controller.abort(new Error('stop')),
    })
    const error = (await exportStream({
      source: fromIterable([...partitions.edge!, ...partitions.tiny!]),
      format: csv(),
      gzip: true,
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'held/{customer}.csv.gz' }),
      partitionBy: 'customer',
      signal: controller.signal,
    }).catch((e: unknown) => e)) as ExportError
    s3.clearFaults()
    expect(error.code).toBe('ERR_ABORTED')
    await new Promise((resolve) => setTimeout(resolve, 400)) // the held PutObject's answer
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'held/' }))
    expect(listed.Contents ?? []).toEqual([])
    expect(await s3.openUploads()).toEqual([])
  })
})
