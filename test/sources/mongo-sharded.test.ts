// In-process shards run on worker threads loaded from the build: these tests use dist, as users do.
import { join } from 'node:path'
import { Binary, Decimal128, Double, Int32, Long, ObjectId, type Collection } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as dist from '../../dist/index.js'
import { realMongoUrl, startMongo, type MongoTarget } from '../fixtures/mongo.js'
import { collector, expectSameBytes, listDir, tempDir } from '../helpers.js'

const { csv, exportStream, ExportError, fileSink, jsonl, mongoSource, mongoShardedSource } = dist
const COUNT = 12_000
let mongo: MongoTarget
let url: string
let orders: Collection

// Document i with BSON types the value policy writes exactly; `_id`s increasing with i, more of
// them early on (skew does not matter to the sample's quantiles).
function order(i: number) {
  return {
    _id: ObjectId.createFromTime(1_767_225_600 + (i < 9000 ? i : 9000 + (i - 9000) * 50)),
    n: new Int32(i),
    total: new Double(i + 0.25),
    big: Long.fromString('9223372036854775807').subtract(Long.fromInt(i)),
    price: Decimal128.fromString(`${i}.10`),
    at: new Date(Date.UTC(2026, 1, 1) + i * 1000),
    bytes: new Binary(Buffer.from([i % 256, 7])),
    status: i % 4 === 0 ? 'open' : 'paid',
    note: i % 3 === 0 ? null : `name, "quoted" ${i}\nline`,
    address: { city: i % 2 ? 'Zürich' : 'Paris' },
  }
}

beforeAll(async () => {
  mongo = await startMongo()
  url = realMongoUrl ?? mongo.server!.url
  orders = mongo.client.db('stream_export_test').collection('sharded_orders')
  await orders.drop().catch(() => {})
  await orders.insertMany(Array.from({ length: COUNT }, (_, i) => order(i)))
}, 120_000)
afterAll(() => mongo?.close())

const target = { db: 'stream_export_test', collection: 'sharded_orders' }

describe(`mongoShardedSource (${realMongoUrl ? 'real MongoDB at MONGODB_URL' : 'wire-protocol test server'})`, () => {
  it('hands the documents on in _id order, every BSON value as one cursor sorted by _id gives it (CSV, JSON Lines, a filter and a projection)', async () => {
    for (const [format, options] of [
      [() => csv({ flatten: true }), {}],
      [() => jsonl(), { filter: { status: 'paid' }, projection: { bytes: 0 } }],
    ] as const) {
      const serial = collector()
      await exportStream({
        source: mongoSource({ collection: orders as never, sort: { _id: 1 }, ...options }),
        format: format(),
        sink: serial,
      })
      const sink = collector()
      const source = mongoShardedSource({ url, ...target, shards: 4, sampleSize: 500, batchSize: 700, ...options })
      const result = await exportStream({ source, format: format(), sink })
      expect(source.shards).toBe(4)
      expect(result.rows).toBe('filter' in options ? COUNT - COUNT / 4 : COUNT)
      expectSameBytes(sink.buffer(), serial.buffer())
    }
    expect(await mongo.openCursors()).toBe(0)
  })

  it('an abort mid-export: ERR_ABORTED, no file, no cursor left open', async () => {
    const dir = await tempDir()
    const controller = new AbortController()
    const error = await exportStream({
      source: mongoShardedSource({ url, ...target, shards: 3, batchSize: 100 }),
      format: jsonl(),
      sink: fileSink({ path: join(dir, 'out.jsonl') }),
      signal: controller.signal,
      progressIntervalMs: 5,
      onProgress: (progress) => {
        if (progress.rows > 0) controller.abort()
      },
    }).catch((e: unknown) => e)
    expect((error as InstanceType<typeof ExportError>).code).toBe('ERR_ABORTED')
    expect(await listDir(dir)).toEqual([])
    await expect.poll(() => mongo.openCursors(), { timeout: 5000 }).toBe(0)
  })

  it('refuses _ids of several types (MongoDB ranges compare one type) with ERR_SOURCE before any output', async () => {
    const mixed = mongo.client.db('stream_export_test').collection<{ _id: unknown; v: number }>('sharded_mixed')
    await mixed.drop().catch(() => {})
    await mixed.insertMany([
      { _id: 1, v: 1 },
      { _id: 2, v: 2 },
      { _id: 'three', v: 3 },
    ])
    const dir = await tempDir()
    const error = await exportStream({
      source: mongoShardedSource({ url, db: 'stream_export_test', collection: 'sharded_mixed', shards: 2 }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'out.csv') }),
    }).catch((e: unknown) => e)
    expect((error as InstanceType<typeof ExportError>).code).toBe('ERR_SOURCE')
    expect((error as Error).message).toMatch(/several types \(number to string\)/)
    expect(await listDir(dir)).toEqual([])
    expect(() => mongoShardedSource({ url, collection: 'x', shards: -1 })).toThrow(ExportError)
  })
})
