// Sharded export flows writing their output (the worker recipe, examples/sharded-worker.mjs, in
// separate processes on real Redis, Postgres and the test S3 server): a JSON array from shards,
// split output with a manifest, a shard failing past its attempts.
import { gunzipSync } from 'node:zlib'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { describe, expect, it } from 'vitest'
import { redisUp, ROWS, shardFlows } from './fixtures/shard-flows.js'
import { exportedBytes, expectSameBytes } from './helpers.js'
import { jsonArray, postgresKeysetSource } from '../src/index.js'
import type { ShardedExportResult } from '../src/bullmq.js'
import { parse } from 'csv-parse/sync'

const TABLE = 'se_shard_statements_out'
const flows = shardFlows(TABLE)
const { shardQueue, objectBytes, stashLeft } = flows

describe.skipIf(!redisUp)(`sharded export flows${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('a JSON array from shards: brackets only at the ends, when the first shards are empty, and when every shard is', async () => {
    const { events, worker, add } = await shardQueue()
    worker()
    worker()
    const expected = await exportedBytes({ source: postgresKeysetSource({ pool: flows.pool, table: TABLE, key: 'id' }), format: jsonArray() })
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
    const shardPart = (shard: number, part: number) => (key: string) =>
      new RegExp(`-shard-000${shard}-[0-9a-f]{8}-[0-9a-f]{8}-0000${part}\\.csv\\.gz$`).test(key)
    flows.s3.inject({
      op: 'PutObject',
      match: (key) => key.startsWith(base) && shardPart(2, 2)(key),
      times: 1,
      action: 'close',
      onRequest: () => doomed.kill('SIGKILL'),
    })
    await new Promise((resolve) => doomed.once('exit', resolve))
    worker()
    const result = await job.waitUntilFinished(events, 120_000)
    expect(result).toMatchObject({ rows: ROWS, shards: 4, location: { key: `${base}.manifest.json` } })
    const manifest = JSON.parse((await objectBytes(`${base}.manifest.json`)).toString())
    expect(manifest).toMatchObject({ version: 1, format: 'csv', compression: 'gzip', rows: ROWS })
    expect(result.parts).toBe(manifest.parts.length)
    expect(result.urls).toHaveLength(manifest.parts.length)
    // Each part a complete gzipped CSV with its header; their rows, in order, are the serial export's.
    const header = flows.serialExport.subarray(0, flows.serialExport.indexOf(10) + 1)
    const bodies: Buffer[] = [header]
    for (const part of manifest.parts) {
      const text = gunzipSync(await objectBytes(part.location.key))
      expect(text.subarray(0, header.length).equals(header)).toBe(true)
      expect(part.rows).toBeLessThanOrEqual(40_000)
      bodies.push(text.subarray(header.length))
    }
    expectSameBytes(Buffer.concat(bodies), flows.serialExport)
    // Under the export's name: the parts listed and the manifest, nothing else (no shard manifest, no leftover).
    const listed = await flows.s3.client.send(new ListObjectsV2Command({ Bucket: flows.s3.bucket, Prefix: base }))
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual(
      [...manifest.parts.map((p: { location: { key: string } }) => p.location.key), `${base}.manifest.json`].sort(),
    )
    expect(await flows.s3.openUploads()).toEqual([])

    // A shard out of attempts: every part of every shard removed, no manifest.
    const failing = await add({ shards: 4, gzip: true, splitRows: 40_000 }, 2)
    const failingBase = `exports/${failing.id}`
    flows.s3.inject({ op: 'PutObject', match: (key) => key.startsWith(failingBase) && shardPart(3, 1)(key), action: 500 })
    await expect(failing.waitUntilFinished(events, 120_000)).rejects.toThrow(/Shard 3 of 4 of .* failed after its last attempt/)
    await expect
      .poll(async () => (await flows.s3.client.send(new ListObjectsV2Command({ Bucket: flows.s3.bucket, Prefix: failingBase }))).Contents ?? [], {
        timeout: 10_000,
      })
      .toEqual([])
  }, 180_000)

  it('split output: a shard still writing when the flow fails removes what it wrote once it finds the flow gone', async () => {
    const { queue, events, worker, add } = await shardQueue()
    const job = await add({ shards: 4, gzip: true, splitRows: 40_000 }, 2)
    const base = `exports/${job.id}`
    // The third shard fails every attempt; the fourth is slow (each part lands 3 s late), so the
    // flow fails, and removes what it finds, while the fourth still writes.
    flows.s3.inject({ op: 'PutObject', match: (key) => key.startsWith(base) && key.includes('-shard-0003-'), action: 500 })
    flows.s3.inject({ op: 'PutObject', match: (key) => key.startsWith(base) && key.includes('-shard-0004-'), action: 'pass', delayMs: 3000 })
    worker()
    worker()
    await expect(job.waitUntilFinished(events, 120_000)).rejects.toThrow(/Shard 3 of 4 of .* failed after its last attempt/)
    const late = (await queue.getJob(`${job.id}-shard-3`))!
    await expect.poll(() => late.getState(), { timeout: 60_000, interval: 200 }).toMatch(/^(completed|failed)$/)
    const listed = await flows.s3.client.send(new ListObjectsV2Command({ Bucket: flows.s3.bucket, Prefix: base }))
    expect((listed.Contents ?? []).map((o) => o.Key)).toEqual([])
    // Its first attempt found the flow gone when it finished; its retry before it began, and wrote nothing.
    const ended = (await queue.getJob(`${job.id}-shard-3`))!
    expect(ended.attemptsMade).toBe(2)
    expect(ended.failedReason).toMatch(/flow exporting .* failed before this shard ran/)
  }, 180_000)

  it('partitioned: each shard a file per currency of its range, the parent one manifest of them all; a failed flow leaves nothing', async () => {
    const { events, worker, add } = await shardQueue()
    worker()
    worker()
    const job = await add({ shards: 3, gzip: true, partitionBy: 'currency' })
    const folder = `exports/${job.id}/`
    const result = (await job.waitUntilFinished(events, 120_000)) as ShardedExportResult
    expect(result).toMatchObject({ rows: ROWS, shards: 3, location: { key: `${folder}partitions.manifest.json` } })
    expect(result.partitions!.map((partition) => partition.values.currency).sort()).toEqual(['EUR', 'GBP', 'USD'])
    const listed = async (prefix: string) =>
      ((await flows.s3.client.send(new ListObjectsV2Command({ Bucket: flows.s3.bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort()
    const keys = result.partitions!.flatMap((partition) => partition.locations.map((location) => location.key))
    expect(await listed(folder)).toEqual([...keys, result.location.key].sort()) // no shard manifest, no marker, nothing else
    for (const partition of result.partitions!) {
      expect(partition.locations).toHaveLength(3) // a file from each shard
      // Every row of the currency once, in key order, across the shards' files.
      const ids: number[] = []
      for (const location of partition.locations) {
        const rows = parse(gunzipSync(await objectBytes(location.key)), { columns: true }) as Array<{ id: string; currency: string }>
        expect(new Set(rows.map((row) => row.currency))).toEqual(new Set([partition.values.currency]))
        ids.push(...rows.map((row) => Number(row.id)))
      }
      expect(ids).toEqual([...ids].sort((a, b) => a - b))
      expect(ids.length).toBe(partition.rows)
    }
    expect(result.partitions!.reduce((sum, partition) => sum + partition.rows, 0)).toBe(ROWS)

    // Hive style: names with static text (`exports/<id>/currency=EUR/<id>-<run>-shard-…`), and the
    // shards' manifests too (`exports/<id>/<id>-<run>-shard-…`): none of them left.
    const hive = await add({ shards: 3, gzip: true, partitionBy: { by: 'currency', hive: true } })
    const hiveResult = (await hive.waitUntilFinished(events, 120_000)) as ShardedExportResult
    const hiveKeys = hiveResult.partitions!.flatMap((partition) => partition.locations.map((location) => location.key))
    expect(hiveKeys.every((key) => new RegExp(`^exports/${hive.id}/currency=(EUR|GBP|USD)/${hive.id}-[0-9a-f]{8}-shard-`).test(key))).toBe(true)
    expect(hiveResult.location.key).toBe(`exports/${hive.id}/${hive.id}.manifest.json`)
    expect(await listed(`exports/${hive.id}/`)).toEqual([...hiveKeys, hiveResult.location.key].sort())

    // A shard failing every attempt: the flow fails and removes what every shard wrote (their manifests too).
    flows.s3.inject({ op: 'PutObject', match: (key) => key.includes('-shard-0002-') && key.includes('/currency=GBP/'), action: 500 })
    const failing = await add({ shards: 3, gzip: true, partitionBy: { by: 'currency', hive: true } }, 2)
    await expect(failing.waitUntilFinished(events, 120_000)).rejects.toThrow(/Shard 2 of 3/)
    await expect.poll(() => listed(`exports/${failing.id}/`), { timeout: 20_000, interval: 200 }).toEqual([])
  }, 180_000)

  it('a shard failing past its attempts fails the flow: upload aborted, pieces removed, the parent failed with the shard named', async () => {
    const { queue, events, worker, add } = await shardQueue()
    const job = await add({ shards: 4, gzip: true }, 2)
    const key = `exports/${job.id}.csv.gz`
    // every attempt of the third shard
    flows.s3.inject({ op: 'PutObject', match: (object) => object.startsWith(`${key}.shards/`) && object.endsWith('/2-1'), action: 500 })
    worker()
    await expect(job.waitUntilFinished(events, 120_000)).rejects.toThrow(/Shard 3 of 4 of .* failed after its last attempt/)
    const failed = await queue.getJob(job.id!)
    expect(await failed!.getState()).toBe('failed')
    expect((await queue.getJob(`${job.id}-shard-2`))!.attemptsMade).toBe(2) // both attempts of the shard
    await expect.poll(() => flows.s3.openUploads(), { timeout: 10_000 }).toEqual([])
    await expect.poll(() => stashLeft(key), { timeout: 10_000 }).toEqual([])
    expect(await flows.s3.exists(key)).toBe(false)
  }, 180_000)
})
