// Google Cloud Storage through its XML API: gcsClient with s3Sink, split and partitioned output,
// presigned links and the job processor, against the S3 test server with GCS's documented rules in
// front (gcs-rules.ts: the SDK's checksum headers, tags and Object Lock refused, opaque multipart
// ETags). No GCS emulator installs here; docs/gcs.md says what this does not show.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createExportProcessor } from '../../src/bullmq.js'
import { csv, exportStream, fileSink, fromIterable, gcsClient, jsonl, presignDownload, s3Sink } from '../../src/index.js'
import type { ExportJob, ExportJobResult } from '../../src/jobs/types.js'
import type { ExportCheckpoint } from '../../src/sinks/s3/resumable.js'
import { createJobRunner } from '../../src/jobs/processor.js'
import { startS3, type TestS3 } from '../fixtures/s3-server.js'
import { keyedRows, tempDir } from '../helpers.js'

let s3: TestS3
let gcs: S3Client // (gcsClient makes one)
beforeAll(async () => {
  s3 = await startS3('gcs-exports', { gcs: true })
  gcs = gcsClient({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', endpoint: s3.endpoint }) as unknown as S3Client
})
afterAll(async () => {
  gcs?.destroy()
  await s3?.close()
})

const row = (id: number) => ({ id, customer: `customer-${id % 977}`, note: `${id * 7919}`.repeat(4) })
const rows = (count: number, after?: number) => keyedRows(count, row, after)
const object = async (key: string) =>
  Buffer.from(await (await gcs.send(new GetObjectCommand({ Bucket: 'gcs-exports', Key: key }))).Body!.transformToByteArray())
const plain = async (count: number, gzip: boolean) => {
  const path = join(await tempDir(), 'plain')
  await exportStream({ source: rows(count), format: csv(), gzip, sink: fileSink({ path }) })
  return readFile(path)
}

describe('GCS through the XML API', () => {
  it('the rules bite: a plain S3 client with its default checksums is refused', async () => {
    const error = await exportStream({ source: rows(10), format: csv(), sink: s3Sink({ client: s3.client, bucket: 'gcs-exports', key: 'refused.csv' }) }).catch(
      (e: unknown) => e,
    )
    expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringMatching(/x-amz-checksum|x-amz-sdk-checksum/) })
  })

  it('exports a multipart object byte for byte a file export, and its presigned link downloads it under its file name', async () => {
    const result = await exportStream({
      source: rows(400_000),
      format: csv(),
      sink: s3Sink({ client: gcs, bucket: 'gcs-exports', key: 'orders.csv', partSize: 5 * 1024 * 1024 }),
    })
    const expected = await plain(400_000, false)
    expect(s3.partsReceived.get('orders.csv')).toBeGreaterThan(1)
    expect((await object('orders.csv')).equals(expected)).toBe(true)
    expect(result.location).toMatchObject({ bucket: 'gcs-exports', key: 'orders.csv', etag: expect.stringMatching(/^"[0-9a-f]{32}"$/) })
    expect(result.checksum).toBeUndefined()
    const url = await presignDownload(gcs, { bucket: 'gcs-exports', key: 'orders.csv', filename: 'orders 2026.csv.gz' })
    expect(url).toContain('X-Amz-Credential=S3RVER%2F')
    const response = await fetch(url)
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="orders 2026.csv.gz"')
    expect(Buffer.from(await response.arrayBuffer()).equals(expected)).toBe(true)
  }, 60_000)

  it('split and partitioned output with their manifests', async () => {
    const split = await exportStream({
      source: rows(30_000),
      format: jsonl(),
      split: { rows: 12_000 },
      sink: s3Sink({ client: gcs, bucket: 'gcs-exports', key: 'split/o.jsonl' }),
    })
    expect(split.parts!.map((p) => p.rows)).toEqual([12_000, 12_000, 6_000])
    expect(JSON.parse((await object('split/o.manifest.json')).toString())).toMatchObject({ rows: 30_000 })
    const partitioned = await exportStream({
      source: fromIterable(Array.from({ length: 3_000 }, (_, id) => ({ id, customer: `c${Math.floor(id / 1000)}` }))),
      format: csv(),
      partitionBy: 'customer',
      sink: s3Sink({ client: gcs, bucket: 'gcs-exports', key: 'by-customer/{customer}.csv' }),
    })
    expect(partitioned.partitions!.map((p) => p.rows)).toEqual([1000, 1000, 1000])
    expect(JSON.parse((await object('by-customer/partitions.manifest.json')).toString())).toMatchObject({ rows: 3_000, partitionBy: ['customer'] })
  })

  it('refuses what GCS does not take, before any request', async () => {
    const before = [...s3.requests.values()].reduce((a, b) => a + b, 0)
    const options = { client: gcs, bucket: 'gcs-exports', key: 'x.csv' }
    expect(() => s3Sink({ ...options, tags: { a: 'b' } })).toThrow(/`tags`.*object tags/)
    expect(() => s3Sink({ ...options, overwrite: false })).toThrow(/`overwrite`.*conditional writes/)
    expect(() => s3Sink({ ...options, checksum: 'CRC32C' })).toThrow(/`checksum`/)
    expect(() => createExportProcessor({ s3: gcs, bucket: 'gcs-exports', resolve: () => ({}) as never, expiryTag: true })).toThrow(/`expiryTag`/)
    expect([...s3.requests.values()].reduce((a, b) => a + b, 0)).toBe(before)
    // (The server refuses them too: a tag sent anyway.)
    await expect(gcs.send(new PutObjectCommand({ Bucket: 'gcs-exports', Key: 't', Body: 'x', Tagging: 'a=b' }))).rejects.toThrow(/x-amz-tagging/)
  })

  it('a resumable job paused after a part continues its upload in the next attempt', async () => {
    const data: ExportJob['data'] = {}
    const job: ExportJob = {
      id: 'gcs-1',
      data,
      attemptsMade: 0,
      opts: { attempts: 3 },
      updateProgress: async () => {},
      updateData: async (next: ExportJob['data']) => void Object.assign(data, next),
    }
    const run = createJobRunner({
      s3: gcs,
      bucket: 'gcs-exports',
      resolve: (_job, { after }) => ({ source: rows(300_000, after as number | undefined), format: csv(), key: 'jobs/gcs-1.csv' }),
    })
    const pause = new AbortController()
    pause.abort()
    expect(await run(job, { pause: pause.signal, stop: new AbortController().signal })).toEqual({ paused: true })
    const checkpoint = data.exportCheckpoint as ExportCheckpoint
    expect(checkpoint.parts.length).toBe(1)
    expect(checkpoint.checksum).toBeUndefined()
    const result = (await run({ ...job, attemptsMade: 1 })) as ExportJobResult
    expect(result).toMatchObject({ rows: 300_000, resumed: true, location: { key: 'jobs/gcs-1.csv' } })
    expect((await object('jobs/gcs-1.csv')).equals(await plain(300_000, false))).toBe(true)
    const download = await fetch(result.url)
    expect(download.status).toBe(200)
    expect(Buffer.from(await download.arrayBuffer()).length).toBe(result.bytes)
  }, 60_000)
})
