import { join } from 'node:path'
import { parse } from 'csv-parse/sync'
import { Binary, Decimal128, Double, Int32, Long, ObjectId, UUID, type Collection } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, ExportError, exportStream, fileSink, isRowBatch, jsonl, mongoSource, type Progress } from '../../src/index.js'
import { realMongoUrl, startMongo, type MongoTarget } from '../fixtures/mongo.js'
import { collector, listDir, tempDir } from '../helpers.js'

const COUNT = 40_000
let mongo: MongoTarget
let users: Collection
const uuid = new UUID('6f1c4f5e-2b6d-4c1a-9d7e-0a1b2c3d4e5f')

// Document i, with every BSON type of the value policy.
function user(i: number) {
  return {
    _id: ObjectId.createFromTime(1_767_225_600 + i), // increasing with i
    n: new Int32(i),
    score: new Double(i + 0.5),
    big: Long.fromString('9223372036854775807').subtract(Long.fromInt(i)),
    price: Decimal128.fromString(`${i}.123456789012345678901234567890`.slice(0, 34)),
    at: new Date(Date.UTC(2026, 1, 1) + i * 1000),
    bytes: new Binary(Buffer.from([i % 256, 0, 255])),
    id: uuid,
    active: i % 2 === 0,
    note: i % 3 === 0 ? null : `name, "quoted" ${i}\nline`,
    address: { city: i % 2 ? 'Zürich' : 'Paris', zip: String(10_000 + i) },
    tags: ['a', i],
  }
}

beforeAll(async () => {
  mongo = await startMongo()
  users = mongo.client.db('stream_export_test').collection('users')
  await users.drop().catch(() => {})
  for (let from = 0; from < COUNT; from += 10_000) await users.insertMany(Array.from({ length: 10_000 }, (_, k) => user(from + k)))
}, 120_000)
afterAll(() => mongo?.close())

function expectedCells(i: number) {
  const u = user(i)
  return {
    _id: u._id.toHexString(),
    n: String(i),
    score: String(i + 0.5),
    big: u.big.toString(),
    price: u.price.toString(),
    at: u.at.toISOString(),
    bytes: Buffer.from([i % 256, 0, 255]).toString('base64'),
    id: '6f1c4f5e-2b6d-4c1a-9d7e-0a1b2c3d4e5f',
    active: String(i % 2 === 0),
    note: u.note ?? '',
  }
}

describe(`mongoSource (${realMongoUrl ? 'real MongoDB at MONGODB_URL' : 'wire-protocol test server'})`, () => {
  it('exports 40,000 documents with every BSON type losslessly as CSV (nested as JSON text)', async () => {
    const sink = collector()
    const result = await exportStream({ source: mongoSource({ collection: users, sort: { _id: 1 } }), format: csv(), sink })
    expect(result.rows).toBe(COUNT)
    const records = parse(sink.buffer(), { columns: true }) as Array<Record<string, string>>
    expect(records).toHaveLength(COUNT)
    for (const i of [0, 1, 3, 34_321, COUNT - 1]) {
      expect(records[i]).toEqual({ ...expectedCells(i), address: JSON.stringify(user(i).address), tags: JSON.stringify(['a', i]) })
    }
    expect(records.every((r, i) => r.n === String(i))).toBe(true)
  })

  it('flattens nested documents into dot-path columns', async () => {
    const sink = collector()
    await exportStream({ source: mongoSource({ collection: users, sort: { _id: 1 }, filter: { n: { $lt: 10 } } }), format: csv({ flatten: true }), sink })
    const records = parse(sink.buffer(), { columns: true }) as Array<Record<string, string>>
    expect(Object.keys(records[0])).toEqual(['_id', 'n', 'score', 'big', 'price', 'at', 'bytes', 'id', 'active', 'note', 'address.city', 'address.zip', 'tags'])
    expect(records[7]).toEqual({ ...expectedCells(7), 'address.city': 'Zürich', 'address.zip': '10007', tags: '["a",7]' })
  })

  it('a later document with a new field: ignored by default, an error when asked', async () => {
    const odd = mongo.client.db('stream_export_test').collection<{ _id: number; a: object }>('odd')
    await odd.drop().catch(() => {})
    await odd.insertMany([
      { _id: 1, a: { b: 1 } },
      { _id: 2, a: { b: 2, c: 3 } },
    ])
    const sink = collector()
    await exportStream({ source: mongoSource({ collection: odd, sort: { _id: 1 } }), format: csv({ flatten: true }), sink })
    expect(sink.buffer().toString()).toBe('_id,a.b\n1,1\n2,2\n')
    const error = await exportStream({
      source: mongoSource({ collection: odd, sort: { _id: 1 } }),
      format: csv({ flatten: true, extraColumns: 'error' }),
      sink: collector(),
    }).catch((e) => e)
    expect(error.code).toBe('ERR_FORMAT')
    expect(error.message).toBe('Cannot encode row 1: a column the header does not have: "a.c"')
  })

  it('exports the same documents as JSON Lines with native nesting', async () => {
    const sink = collector()
    await exportStream({
      source: mongoSource({ collection: users, filter: { n: { $in: [new Int32(0), new Int32(37_777)] } }, sort: { _id: 1 } }),
      format: jsonl(),
      sink,
    })
    const [first, second] = sink
      .buffer()
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    const cells = expectedCells(37_777)
    expect(second).toEqual({
      ...cells,
      n: 37_777,
      score: 37_777.5,
      active: false,
      note: user(37_777).note,
      address: { city: 'Zürich', zip: '47777' },
      tags: ['a', 37_777],
    })
    expect(first.note).toBeNull()
  })

  it('reads any cursor given to it, such as an aggregation', async () => {
    const cursor = users.aggregate([{ $match: { n: { $lt: 5 } } }, { $sort: { _id: -1 } }, { $project: { n: 1 } }])
    const rows = await mongoSource({ cursor }).toArray()
    expect(rows.map((r) => Number(r.n))).toEqual([4, 3, 2, 1, 0])
  })

  it('hands the documents of a collection on a driver batch at a time once asked; a given cursor (which may map them) one by one', async () => {
    const source = mongoSource({ collection: users, filter: { n: { $lt: 2_500 } }, sort: { _id: 1 }, batchSize: 1_000 })
    source.sendBatches!()
    const chunks = await source.toArray()
    expect(chunks.map((chunk) => (isRowBatch(chunk) ? chunk.rows.length : 'row'))).toEqual([1_000, 1_000, 500])
    expect(chunks.flatMap((chunk) => chunk.rows).map((doc: { n: number }) => Number(doc.n))).toEqual(Array.from({ length: 2_500 }, (_, i) => i))
    const mapped = mongoSource({ cursor: users.find({ n: { $lt: 3 } }, { sort: { _id: 1 } }).map((doc) => ({ twice: doc.n * 2 })) })
    mapped.sendBatches?.()
    expect(await mapped.toArray()).toEqual([{ twice: 0 }, { twice: 2 }, { twice: 4 }])
  })

  it('reports exact and estimated counts for progress', async () => {
    for (const count of ['exact', 'estimate'] as const) {
      expect(await mongoSource({ collection: users, filter: { n: { $lt: 2500 } }, count }).countRows?.()).toBe(count === 'exact' ? 2500 : COUNT)
      const reports: Progress[] = []
      await exportStream({
        source: mongoSource({ collection: users, filter: { n: { $lt: 2500 } }, count }),
        format: jsonl(),
        sink: collector(),
        onProgress: (p) => void reports.push(p),
      })
      // The last report gives the real count, whatever the estimate said.
      expect(reports.at(-1)).toMatchObject({ rows: 2500, totalRows: 2500, percent: 100 })
    }
  })

  it('early destroy and abort close the cursor on the server', async () => {
    const before = await mongo.openCursors()
    const source = mongoSource({ collection: users, batchSize: 500 })
    let seen = 0
    for await (const _doc of source) if (++seen === 1200) break
    await expect.poll(() => mongo.openCursors()).toBe(before)
    if (mongo.server) expect(mongo.server.killedCursors.length).toBeGreaterThan(0)

    const dir = await tempDir()
    const controller = new AbortController()
    const error = await exportStream({
      source: mongoSource({ collection: users, batchSize: 500 }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'out.csv') }),
      signal: controller.signal,
      progressIntervalMs: 1,
      onProgress: (p) => {
        if (p.rows > 3000) controller.abort()
      },
    }).catch((e) => e)
    expect(error.code).toBe('ERR_ABORTED')
    await expect.poll(() => mongo.openCursors()).toBe(before)
    expect(await listDir(dir)).toEqual([])
  })

  it('a bad filter rejects with ERR_SOURCE and the driver error', async () => {
    const dir = await tempDir()
    const error = await exportStream({
      source: mongoSource({ collection: users, filter: { n: { $nope: 1 } } }),
      format: csv(),
      sink: fileSink({ path: join(dir, 'x.csv') }),
    }).catch((e) => e)
    expect(error).toBeInstanceOf(ExportError)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.cause.code).toBe(2) // BadValue
    expect(await listDir(dir)).toEqual([])
  })

  describe.skipIf(realMongoUrl !== undefined)('injected faults (test server only: they need fault injection)', () => {
    for (const fault of [
      { name: 'a server error mid-stream', code: 11601, codeName: 'Interrupted', errmsg: 'operation was interrupted' },
      { name: 'a killed cursor (CursorNotFound)', code: 43, codeName: 'CursorNotFound', errmsg: 'cursor id 1 not found' },
    ]) {
      it(`${fault.name} rejects with ERR_SOURCE and leaves no output`, async () => {
        const dir = await tempDir()
        mongo.server!.failGetMore(3, fault)
        const error = await exportStream({
          source: mongoSource({ collection: users, batchSize: 1000 }),
          format: csv(),
          gzip: true,
          sink: fileSink({ path: join(dir, 'out.csv.gz') }),
        }).catch((e) => e)
        expect(error.code).toBe('ERR_SOURCE')
        expect(error.cause.code).toBe(fault.code)
        expect(await listDir(dir)).toEqual([])
      })
    }
  })

  it('keyset mode: resuming from the checkpoint yields exactly the remaining documents', async () => {
    const first = mongoSource({ collection: users, keyset: true, batchSize: 5000, projection: { n: 1 } })
    const seen: number[] = []
    for await (const doc of first) {
      seen.push(Number(doc.n))
      if (seen.length === 4321) break
    }
    expect((first.checkpoint as ObjectId).toHexString()).toBe(user(4320)._id.toHexString())
    const reports: Progress[] = []
    const rest: number[] = []
    const sink = collector()
    await exportStream({
      source: mongoSource({ collection: users, keyset: true, batchSize: 5000, projection: { n: 1 }, after: first.checkpoint, count: 'exact' }),
      format: jsonl(),
      sink,
      onProgress: (p) => void reports.push(p),
    })
    for (const line of sink.buffer().toString().trim().split('\n')) rest.push(JSON.parse(line).n)
    expect([...seen, ...rest]).toEqual(Array.from({ length: COUNT }, (_, i) => i))
    expect(reports.at(-1)).toMatchObject({ rows: COUNT - 4321, totalRows: COUNT - 4321, percent: 100 })
    expect(await mongo.openCursors()).toBe(0)
  })

  it('validates its options', () => {
    expect(() => mongoSource({})).toThrow('Expected `cursor | collection` to be exactly one of them')
    expect(() => mongoSource({ collection: users, batchSize: 0 })).toThrow('Expected `batchSize` to be a positive integer, got `0` (number)')
    expect(() => mongoSource({ collection: users, keyset: true, sort: { n: 1 } })).toThrow('Expected `sort` to be undefined in keyset mode')
    expect(() => mongoSource({ collection: users, after: 1 })).toThrow('Expected `after` to be given only with `keyset: true`')
    expect(() => mongoSource({ cursor: users.find(), filter: {} })).toThrow('Expected `filter` to be undefined with `cursor`')
  })

  it('maxTimeMS: a query the server cannot finish in time fails (ERR_SOURCE, MaxTimeMSExpired), cursor, keyset and count alike', async () => {
    // The server's work: on the test server, a cost it charges each query; on a real MongoDB, a
    // JavaScript condition that sleeps (allowed in find and in countDocuments' $match alike).
    const slow = mongo.server ? {} : { $expr: { $function: { body: 'function() { sleep(20); return true }', args: [], lang: 'js' } } }
    mongo.server?.queryCost(500)
    try {
      for (const options of [{}, { keyset: true }, { count: 'exact' as const }]) {
        const source = mongoSource({ collection: users, filter: { n: { $lt: 50 }, ...slow }, maxTimeMS: 100, ...options })
        const error = await exportStream({ source, format: csv(), sink: collector() }).catch((e: ExportError) => e)
        expect(error, JSON.stringify(options)).toMatchObject({ code: 'ERR_SOURCE', cause: { code: 50 } })
      }
      const enough = await exportStream({
        source: mongoSource({ collection: users, filter: { n: { $lt: 5 } }, maxTimeMS: 60_000 }),
        format: csv(),
        sink: collector(),
      })
      expect(enough.rows).toBe(5)
    } finally {
      mongo.server?.queryCost(0)
    }
    expect(() => mongoSource({ cursor: users.find(), maxTimeMS: 10 })).toThrow('Expected `maxTimeMS` to be undefined with `cursor`')
  })
})
