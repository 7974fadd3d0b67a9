// Sharded exports as a BullMQ flow: the worker recipe (examples/sharded-worker.mjs) in separate
// processes on real Redis, Postgres and the test S3 server (which holds completions to real S3's
// rules: parts in order, every part but the last at least 5 MiB), killed at chosen requests.
import { gunzipSync } from 'node:zlib'
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createStatements, databaseUrl, tableCsv } from './fixtures/postgres.js'
import { recipeQueue } from './fixtures/recipe-worker.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { exportedBytes, expectSameBytes } from './helpers.js'
import { jsonArray, postgresKeysetSource } from '../src/index.js'

const redisUp = process.env.REDIS_AVAILABLE === '1'
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const TABLE = 'se_shard_statements'
const ROWS = 300_000 // ~31 MB of CSV: two shards of three pieces each (5 MiB parts); ~9 MB gzipped

let s3: TestS3
let serialExport: Buffer
let pool: pg.Pool

beforeAll(async () => {
  if (!redisUp) return
  s3 = await startS3()
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
  await createStatements(pool, TABLE, ROWS)
  serialExport = await tableCsv(TABLE)
}, 180_000)
afterEach(() => s3?.clearFaults())
afterAll(async () => {
  await s3?.close()
  await pool?.end()
})

async function shardQueue() {
  // The workers' own connections, told apart from the test's for the leak check.
  const applicationName = `se-shards-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`
  const url = new URL(databaseUrl())
  url.searchParams.set('application_name', applicationName)
  const { name, queue, events, worker } = await recipeQueue({
    prefix: 'se-shards',
    recipe: 'sharded-worker.mjs',
    redisUrl,
    s3,
    env: { DATABASE_URL: url.toString() },
  })
  // Job ids unique across the tests' queues: the object keys are made of them.
  const add = (data: object, attempts = 3) =>
    queue.add(
      'statements',
      { table: TABLE, ...data },
      { jobId: `${name}-${Math.random().toString(36).slice(2, 6)}`, attempts, backoff: { type: 'fixed', delay: 100 } },
    )
  const workerBackends = async () =>
    (await pool.query<{ state: string }>('select state from pg_stat_activity where application_name = $1', [applicationName])).rows.map((r) => r.state)
  return { queue, events, worker, add, workerBackends }
}

async function objectBytes(key: string): Promise<Buffer> {
  const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
  return Buffer.from(await object.Body!.transformToByteArray())
}

async function stashLeft(key: string): Promise<string[]> {
  const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${key}.shards/` }))
  return (listed.Contents ?? []).map((o) => o.Key!)
}

describe.skipIf(!redisUp)(`sharded export flows${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('8 shards over 2 workers, one SIGKILLed mid-shard and restarted: one object, byte for byte the serial export, nothing left behind', async () => {
    const { events, worker, add, workerBackends } = await shardQueue()
    const job = await add({ shards: 8, gzip: true })
    const key = `exports/${job.id}.csv.gz`
    const doomed = worker()
    worker()
    // The fourth shard's piece is on its way when its worker dies: never stored, never checkpointed.
    s3.inject({ op: 'PutObject', key: `${key}.shards/3-1`, times: 1, action: 'close', onRequest: () => doomed.kill('SIGKILL') })
    await new Promise((resolve) => doomed.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 8, location: { key } })
    expectSameBytes(gunzipSync(await objectBytes(key)), serialExport) // every row once, in key order, one header
    expect(await s3.openUploads()).toEqual([])
    expect(await stashLeft(key)).toEqual([])
    expect(s3.requests.get(`PutObject ${key}.shards/3-1`)).toBe(2) // the killed attempt's, and its successor's
    // The live workers hold no connection in a transaction or a query: every one is idle in its pool.
    expect((await workerBackends()).filter((state) => state !== 'idle')).toEqual([])
  }, 180_000)

  it('shards of several 5 MiB parts: first and last pieces joined to their neighbours, a shard resumed from its checkpoint after its worker is killed', async () => {
    const { events, worker, add } = await shardQueue()
    const job = await add({ shards: 2, gzip: false })
    const key = `exports/${job.id}.csv`
    const first = worker()
    // Each shard is three pieces (~15 MB): the first shard has checkpointed part 1 when its worker
    // dies sending part 2.
    s3.inject({ op: 'UploadPart', key, partNumber: 2, times: 1, action: 'close', onRequest: () => first.kill('SIGKILL') })
    let partOneSent = 0
    s3.inject({ op: 'UploadPart', key, partNumber: 1, times: 10, action: 'pass', onRequest: () => partOneSent++ })
    await new Promise((resolve) => first.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 2 })
    expectSameBytes(await objectBytes(key), serialExport)
    expect(s3.requests.get(`CompleteMultipartUpload ${key}`)).toBe(1) // accepted at once: no part under 5 MiB but the last
    expect(partOneSent).toBe(1) // the first shard went on from its checkpoint
    // Parts 1 and 2 of the first shard, the second's middle part, and the two joins (the first
    // shard's last piece with the second's first, and the second's last piece): five parts listed.
    expect(s3.partsReceived.get(key)).toBeGreaterThanOrEqual(5)
    expect(await s3.openUploads()).toEqual([])
    expect(await stashLeft(key)).toEqual([])
  }, 180_000)

  it('the parent killed after S3 assembled the object, before it said so: its next run recognises the object and succeeds', async () => {
    const { events, worker, add } = await shardQueue()
    const job = await add({ shards: 4, gzip: true })
    const key = `exports/${job.id}.csv.gz`
    const first = worker()
    s3.inject({ op: 'CompleteMultipartUpload', key, times: 1, action: 'pass', onDone: () => first.kill('SIGKILL'), holdResponseMs: 1000 })
    await new Promise((resolve) => first.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 4 })
    expect(s3.requests.get(`CompleteMultipartUpload ${key}`)).toBe(2) // the second found the upload gone, and the object its parts make
    expectSameBytes(gunzipSync(await objectBytes(key)), serialExport)
    expect(await stashLeft(key)).toEqual([])
  }, 180_000)

  it('a JSON array from shards: brackets only at the ends, when the first shards are empty, and when every shard is', async () => {
    const { events, worker, add } = await shardQueue()
    worker()
    worker()
    const expected = await exportedBytes({ source: postgresKeysetSource({ pool, table: TABLE, key: 'id' }), format: jsonArray() })
    // The first two ranges hold no row: the third shard's first row opens the array.
    const ranges = [
      { index: 0, until: -2 },
      { index: 1, after: -2, until: -1 },
      { index: 2, after: -1, until: 100_000 },
      { index: 3, after: 100_000 },
    ]
    for (const gzip of [true, false]) {
      const job = await add({ format: 'json', gzip, ranges })
      const key = `exports/${job.id}.json${gzip ? '.gz' : ''}`
      expect(await job.waitUntilFinished(events, 120_000)).toMatchObject({ rows: ROWS, shards: 4, location: { key } })
      const bytes = await objectBytes(key)
      expectSameBytes(gzip ? gunzipSync(bytes) : bytes, expected)
      expect(await stashLeft(key)).toEqual([])
    }
    // No shard holds a row: `[]`, as an export of no rows writes it.
    const job = await add({ format: 'json', gzip: true, ranges: ranges.slice(0, 2) })
    expect(await job.waitUntilFinished(events, 120_000)).toMatchObject({ rows: 0, shards: 2 })
    expect(gunzipSync(await objectBytes(`exports/${job.id}.json.gz`)).toString()).toBe('[]\n')
  }, 180_000)

  it('split output: each shard writes complete parts, the parent one manifest of them in key order; a shard killed mid-range is written again, nothing stale left; a failed flow leaves nothing', async () => {
    const { events, worker, add } = await shardQueue()
    const job = await add({ shards: 4, gzip: true, splitRows: 40_000 })
    const base = `exports/${job.id}`
    const doomed = worker()
    worker()
    // The second shard's second part (one PutObject: below one upload part) is on its way when its worker dies.
    s3.inject({ op: 'PutObject', key: `${base}-shard-0002-00002.csv.gz`, times: 1, action: 'close', onRequest: () => doomed.kill('SIGKILL') })
    await new Promise((resolve) => doomed.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 4, location: { key: `${base}.manifest.json` } })
    const manifest = JSON.parse((await objectBytes(`${base}.manifest.json`)).toString())
    expect(manifest).toMatchObject({ version: 1, format: 'csv', compression: 'gzip', rows: ROWS })
    expect(result.parts).toBe(manifest.parts.length)
    expect(result.urls).toHaveLength(manifest.parts.length)
    // Each part a complete gzipped CSV with its header; their rows, in order, are the serial export's.
    const header = serialExport.subarray(0, serialExport.indexOf(10) + 1)
    const bodies: Buffer[] = [header]
    for (const part of manifest.parts) {
      const text = gunzipSync(await objectBytes(part.location.key))
      expect(text.subarray(0, header.length).equals(header)).toBe(true)
      expect(part.rows).toBeLessThanOrEqual(40_000)
      bodies.push(text.subarray(header.length))
    }
    expectSameBytes(Buffer.concat(bodies), serialExport)
    // Under the export's name: the parts listed and the manifest, nothing else (no shard manifest, no leftover).
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: base }))
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual(
      [...manifest.parts.map((p: { location: { key: string } }) => p.location.key), `${base}.manifest.json`].sort(),
    )
    expect(await s3.openUploads()).toEqual([])

    // A shard out of attempts: every part of every shard removed, no manifest.
    const failing = await add({ shards: 4, gzip: true, splitRows: 40_000 }, 2)
    const failingBase = `exports/${failing.id}`
    s3.inject({ op: 'PutObject', key: `${failingBase}-shard-0003-00001.csv.gz`, action: 500 })
    await expect(failing.waitUntilFinished(events, 120_000)).rejects.toThrow(/Shard 3 of 4 of .* failed after its last attempt/)
    await expect
      .poll(async () => (await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: failingBase }))).Contents ?? [], { timeout: 10_000 })
      .toEqual([])
  }, 180_000)

  it('a shard failing past its attempts fails the flow: upload aborted, pieces removed, the parent failed with the shard named', async () => {
    const { queue, events, worker, add } = await shardQueue()
    const job = await add({ shards: 4, gzip: true }, 2)
    const key = `exports/${job.id}.csv.gz`
    s3.inject({ op: 'PutObject', key: `${key}.shards/2-1`, action: 500 }) // every attempt of the third shard
    worker()
    await expect(job.waitUntilFinished(events, 120_000)).rejects.toThrow(/Shard 3 of 4 of .* failed after its last attempt/)
    const failed = await queue.getJob(job.id!)
    expect(await failed!.getState()).toBe('failed')
    expect((await queue.getJob(`${job.id}-shard-2`))!.attemptsMade).toBe(2) // both attempts of the shard
    await expect.poll(() => s3.openUploads(), { timeout: 10_000 }).toEqual([])
    await expect.poll(() => stashLeft(key), { timeout: 10_000 }).toEqual([])
    expect(await s3.exists(key)).toBe(false)
  }, 180_000)
})
