// Sharded exports as a BullMQ flow: the worker recipe (examples/sharded-worker.mjs) in separate
// processes on real Redis, Postgres and the test S3 server (which holds completions to real S3's
// rules: parts in order, every part but the last at least 5 MiB), killed at chosen requests: workers and parents killed
// (bullmq-shards-output.test.ts: JSON arrays, split output, a failing shard).
import { gunzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { redisUp, ROWS, shardFlows } from './fixtures/shard-flows.js'
import { expectSameBytes, sdkChecksum } from './helpers.js'

const TABLE = 'se_shard_statements'
const flows = shardFlows(TABLE)
const { shardQueue, objectBytes, stashLeft } = flows

describe.skipIf(!redisUp)(`sharded export flows${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('8 shards over 2 workers, one SIGKILLed mid-shard and restarted: one object, byte for byte the serial export, nothing left behind', async () => {
    const { events, worker, add, workerBackends } = await shardQueue()
    const job = await add({ shards: 8, gzip: true })
    const key = `exports/${job.id}.csv.gz`
    const doomed = worker()
    worker()
    // The fourth shard's piece is on its way when its worker dies: never stored, never checkpointed.
    // The flow's pieces are held under its run: `${key}.shards/<run>/<shard>-<piece>`.
    const piece = (name: string) => (object: string) => object.startsWith(`${key}.shards/`) && object.endsWith(`/${name}`)
    flows.s3.inject({ op: 'PutObject', match: piece('3-1'), times: 1, action: 'close', onRequest: () => doomed.kill('SIGKILL') })
    await new Promise((resolve) => doomed.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 8, location: { key } })
    expectSameBytes(gunzipSync(await objectBytes(key)), flows.serialExport) // every row once, in key order, one header
    expect(await flows.s3.openUploads()).toEqual([])
    expect(await stashLeft(key)).toEqual([])
    const sent = [...flows.s3.requests].filter(([request]) => request.startsWith('PutObject ') && piece('3-1')(request.slice('PutObject '.length)))
    expect(sent.map(([, count]) => count)).toEqual([2]) // the killed attempt's, and its successor's
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
    flows.s3.inject({ op: 'UploadPart', key, partNumber: 2, times: 1, action: 'close', onRequest: () => first.kill('SIGKILL') })
    let partOneSent = 0
    flows.s3.inject({ op: 'UploadPart', key, partNumber: 1, times: 10, action: 'pass', onRequest: () => partOneSent++ })
    await new Promise((resolve) => first.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 2 })
    const stored = await objectBytes(key)
    expectSameBytes(stored, flows.serialExport)
    // The object's checksum, combined from every shard's parts and the parent's joins, as S3 verified it.
    expect(result.checksum).toEqual({ algorithm: 'CRC64NVME', value: await sdkChecksum('CRC64NVME', stored), bytes: stored.length, verifiedByStore: true })
    expect(flows.s3.requests.get(`CompleteMultipartUpload ${key}`)).toBe(1) // accepted at once: no part under 5 MiB but the last
    expect(partOneSent).toBe(1) // the first shard went on from its checkpoint
    // Parts 1 and 2 of the first shard, the second's middle part, and the two joins (the first
    // shard's last piece with the second's first, and the second's last piece): five parts listed.
    expect(flows.s3.partsReceived.get(key)).toBeGreaterThanOrEqual(5)
    expect(await flows.s3.openUploads()).toEqual([])
    expect(await stashLeft(key)).toEqual([])
  }, 180_000)

  it('the parent killed after S3 assembled the object, before it said so: its next run recognises the object and succeeds', async () => {
    const { events, worker, add } = await shardQueue()
    const job = await add({ shards: 4, gzip: true })
    const key = `exports/${job.id}.csv.gz`
    const first = worker()
    flows.s3.inject({ op: 'CompleteMultipartUpload', key, times: 1, action: 'pass', onDone: () => first.kill('SIGKILL'), holdResponseMs: 1000 })
    await new Promise((resolve) => first.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 4 })
    expect(flows.s3.requests.get(`CompleteMultipartUpload ${key}`)).toBe(2) // the second found the upload gone, and the object its parts make
    const stored = await objectBytes(key)
    expectSameBytes(gunzipSync(stored), flows.serialExport)
    // Combined from the parts (the store's answer to the completion was lost: not verified by it).
    expect(result.checksum).toEqual({ algorithm: 'CRC64NVME', value: await sdkChecksum('CRC64NVME', stored), bytes: stored.length, verifiedByStore: false })
    expect(await stashLeft(key)).toEqual([])
  }, 180_000)
})
