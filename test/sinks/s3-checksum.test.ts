// Full-object checksums against a server that verifies them as S3 does (the fixture computes them
// with the SDK's own CRCs over the bytes it stores): the result's checksum is the stored object's,
// and bytes damaged in flight or at rest fail the export with nothing left behind.
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { csv, exportStream, fileSink, fromIterable, s3Sink, type ChecksumAlgorithm } from '../../src/index.js'
import { startS3, type TestS3 } from '../fixtures/s3-server.js'
import { sdkChecksum } from '../helpers.js'

const MiB = 1024 * 1024
let s3: TestS3
let dir: string
beforeAll(async () => {
  s3 = await startS3()
  dir = await mkdtemp(join(tmpdir(), 'se-checksum-'))
})
afterEach(() => s3.clearFaults())
afterAll(async () => {
  await s3.close()
  await rm(dir, { recursive: true, force: true })
})

const object = async (key: string) =>
  Buffer.from(await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToByteArray())
// Incompressible rows: ~12 MiB of CSV, three parts of 5 MiB.
const noise = (rows: number) => Array.from({ length: rows }, (_, id) => ({ id, noise: randomBytes(600).toString('base64') }))
const exportTo = (key: string, rows: Iterable<object>, checksum?: ChecksumAlgorithm | false) =>
  exportStream({ source: fromIterable(rows), format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB, checksum }) })

describe('full-object checksums on S3', () => {
  it('a multipart export gives the CRC64NVME of the object S3 assembled, verified by S3 at the completion', async () => {
    const result = await exportTo('sum/multi.csv', noise(15_000))
    const stored = await object('sum/multi.csv')
    expect(stored.length).toBeGreaterThan(10 * MiB)
    expect(result.checksum).toEqual({ algorithm: 'CRC64NVME', value: await sdkChecksum('CRC64NVME', stored), bytes: stored.length, verifiedByStore: true })
  }, 60_000)

  it('a small export (one PutObject) and CRC32C by option', async () => {
    const result = await exportTo('sum/small.csv', statements(100), 'CRC32C')
    const stored = await object('sum/small.csv')
    expect(result.checksum).toEqual({ algorithm: 'CRC32C', value: await sdkChecksum('CRC32C', stored), bytes: stored.length, verifiedByStore: true })
  })

  it('`checksum: false` sends none and reports none', async () => {
    const result = await exportTo('sum/none.csv', noise(10_000), false)
    expect(result.checksum).toBeUndefined()
    expect(await s3.exists('sum/none.csv')).toBe(true)
  }, 60_000)

  it('a part damaged in flight is refused by S3 (BadDigest): the export fails and leaves no object and no upload', async () => {
    const key = 'sum/damaged-part.csv'
    s3.inject({ op: 'UploadPart', key, partNumber: 2, action: 'corrupt' })
    const error = await exportTo(key, noise(15_000)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SINK', cause: { name: 'BadDigest' } })
    expect(await s3.exists(key)).toBe(false)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('a part damaged at rest before the completion fails the completion (the whole-object checksum): nothing is completed', async () => {
    const key = 'sum/rotted.csv'
    s3.inject({ op: 'CompleteMultipartUpload', key, action: 'corrupt' })
    const error = await exportTo(key, noise(15_000)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SINK', cause: { name: 'BadDigest' } })
    expect(await s3.exists(key)).toBe(false)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('a small export damaged in flight is refused, and the object already at the key is untouched', async () => {
    const key = 'sum/damaged-put.csv'
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: 'earlier export' }))
    s3.inject({ op: 'PutObject', key, action: 'corrupt' })
    const error = await exportTo(key, statements(100)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SINK', cause: { name: 'BadDigest' } })
    expect((await object(key)).toString()).toBe('earlier export')
  })

  it('a split export lists each part with its checksum, as S3 verified it (and as written, for files)', async () => {
    const split = { rows: 2000 }
    const onS3 = await exportStream({
      source: fromIterable(statements(5000)),
      format: csv(),
      split,
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'sum/split.csv' }),
    })
    const onDisk = await exportStream({ source: fromIterable(statements(5000)), format: csv(), split, sink: fileSink({ path: join(dir, 'split.csv') }) })
    expect(onS3.manifest!.parts).toHaveLength(3)
    for (const part of onS3.manifest!.parts) {
      const stored = await object(part.location.key)
      expect(part.checksum).toEqual({ algorithm: 'CRC64NVME', value: await sdkChecksum('CRC64NVME', stored), bytes: stored.length, verifiedByStore: true })
    }
    for (const part of onDisk.manifest!.parts) {
      const bytes = await readFile(part.location.path)
      expect(part.checksum).toEqual({ algorithm: 'CRC64NVME', value: await sdkChecksum('CRC64NVME', bytes), bytes: bytes.length })
    }
  })

  it('the file sink gives the same checksum S3 would for the same bytes', async () => {
    const path = join(dir, 'statements.csv')
    const result = await exportStream({ source: fromIterable(statements(5000)), format: csv(), sink: fileSink({ path }) })
    const bytes = await readFile(path)
    expect(result.checksum).toEqual({ algorithm: 'CRC64NVME', value: await sdkChecksum('CRC64NVME', bytes), bytes: bytes.length })
  })
})
