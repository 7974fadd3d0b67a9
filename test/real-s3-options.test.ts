// What compliance asks of an export's object, against a real S3 (Ceph RGW, started with SSE-C
// allowed on loopback and SSE-KMS keys testkey-1 and testkey-2): SSE-KMS with a key id, SSE-C
// (the object unreadable without the key; a presigned link that works with the key's headers),
// tags, metadata, Object Lock retention and legal hold (which RGW 16 drops from a multipart
// upload: the sink sets them on the completed object). RGW ignores the expected bucket owner: the
// S3 test server checks it (test/sinks/conditional-writes.test.ts).
import { createHash, randomBytes } from 'node:crypto'
import {
  BucketAlreadyOwnedByYou,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectLegalHoldCommand,
} from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import {
  csv,
  exportStream,
  fromIterable,
  postgresKeysetSource,
  presignDownload,
  s3Sink,
  sseCustomerHeaders,
  verifyExport,
  type S3SinkOptions,
} from '../src/index.js'
import { createExportProcessor, type ExportJob, type ExportSpec } from '../src/bullmq.js'
import { databaseUrl } from './fixtures/postgres.js'
import { realS3Available, startRealS3, type RealS3 } from './fixtures/real-s3.js'

const available = realS3Available()
const MiB = 1024 * 1024
let s3: RealS3

/** Rows of about 1 KB each, not compressible: 12,000 of them are three parts of 5 MiB. */
function* rows(count: number) {
  for (let id = 1; id <= count; id++) yield { id, blob: createHash('sha512').update(String(id)).digest('hex').repeat(8) }
}
const expected = async (count: number) => {
  const chunks: Buffer[] = []
  await exportStream({ source: rows(count), format: csv(), sink: new (await import('node:stream')).Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }) })
  return Buffer.concat(chunks)
}
const exportTo = (key: string, count: number, options: Partial<S3SinkOptions>, bucket = s3.bucket) =>
  exportStream({ source: rows(count), format: csv(), sink: s3Sink({ client: s3.client, bucket, key, partSize: 5 * MiB, ...options }) })
const body = async (input: { Bucket?: string; Key: string; SSECustomerAlgorithm?: string; SSECustomerKey?: string }) =>
  Buffer.from(await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, ...input }))).Body!.transformToByteArray())

describe.skipIf(!available)(`S3 object options on a real S3 (Ceph RGW)${available ? '' : ' (skipped: no S3 at S3_ENDPOINT)'}`, () => {
  beforeAll(async () => {
    s3 = await startRealS3()
  })
  afterAll(() => s3?.close())

  it('SSE-KMS with a key id, tags and metadata arrive on a multipart object and a small one', async () => {
    for (const [key, count] of [
      ['kms/multi.csv', 12_000],
      ['kms/small.csv', 10],
    ] as const) {
      await exportTo(key, count, { sseKmsKeyId: 'testkey-1', tags: { retention: '30d', tenant: 'acme co: eu/1' }, metadata: { job: '42' } })
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }))
      expect(head).toMatchObject({ ServerSideEncryption: 'aws:kms', SSEKMSKeyId: 'testkey-1', Metadata: { job: '42' } })
      const { TagSet } = await s3.client.send(new GetObjectTaggingCommand({ Bucket: s3.bucket, Key: key }))
      expect(TagSet).toEqual(
        expect.arrayContaining([
          { Key: 'retention', Value: '30d' },
          { Key: 'tenant', Value: 'acme co: eu/1' },
        ]),
      )
      expect((await body({ Key: key })).equals(await expected(count))).toBe(true)
    }
  }, 60_000)

  it('SSE-C: unreadable without the key; read with it, and through a presigned link that sends its headers', async () => {
    const key = randomBytes(32)
    for (const [name, count] of [
      ['ssec/multi.csv', 12_000],
      ['ssec/small.csv', 10],
    ] as const) {
      const result = await exportTo(name, count, { sseCustomerKey: key, overwrite: false })
      expect(result.location?.etag).toBeDefined()
      // Read back with the key: the bytes are the checksum's (RGW keeps no checksum of its own).
      const target = { bucket: s3.bucket, key: name }
      expect(await verifyExport({ target, client: s3.client, sseCustomerKey: key, expected: result.checksum })).toMatchObject({ ok: true })
      await expect(verifyExport({ target, client: s3.client, sseCustomerKey: key })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
      await expect(body({ Key: name })).rejects.toMatchObject({ $metadata: { httpStatusCode: 400 } })
      expect((await body({ Key: name, SSECustomerAlgorithm: 'AES256', SSECustomerKey: key.toString('base64') })).equals(await expected(count))).toBe(true)
      const url = await presignDownload(s3.client, { bucket: s3.bucket, key: name, sseCustomerKey: key.toString('base64') })
      expect(url).not.toContain(key.toString('base64').slice(0, 12)) // the key is not in the link
      expect((await fetch(url)).ok).toBe(false)
      const download = await fetch(url, { headers: sseCustomerHeaders(key) })
      expect(Buffer.from(await download.arrayBuffer()).equals(await expected(count))).toBe(true)
    }
    // overwrite: false sees an SSE-C object too (its HeadObject without the key answers 400).
    expect(await exportTo('ssec/small.csv', 10, { sseCustomerKey: key, overwrite: false }).catch((e: unknown) => e)).toMatchObject({ code: 'ERR_PRECONDITION' })
  }, 60_000)

  it('Object Lock: the retention and the legal hold are on the object', async () => {
    const bucket = `${s3.bucket}-lock`
    await s3.client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true })).catch((error: unknown) => {
      if (!(error instanceof BucketAlreadyOwnedByYou)) throw error
    })
    const retainUntil = new Date(Date.now() + 86_400_000)
    try {
      await exportTo('locked.csv', 12_000, { objectLock: { mode: 'GOVERNANCE', retainUntil, legalHold: true } }, bucket)
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'locked.csv' }))
      expect(head).toMatchObject({ ObjectLockMode: 'GOVERNANCE', ObjectLockLegalHoldStatus: 'ON' })
      expect(Math.abs(head.ObjectLockRetainUntilDate!.getTime() - retainUntil.getTime())).toBeLessThan(1000)
    } finally {
      const { Versions = [] } = await s3.client.send(new ListObjectVersionsCommand({ Bucket: bucket }))
      for (const { Key, VersionId } of Versions) {
        await s3.client.send(new PutObjectLegalHoldCommand({ Bucket: bucket, Key, VersionId, LegalHold: { Status: 'OFF' } }))
        await s3.client.send(new DeleteObjectCommand({ Bucket: bucket, Key, VersionId, BypassGovernanceRetention: true }))
      }
      await s3.client.send(new DeleteBucketCommand({ Bucket: bucket }))
    }
  }, 60_000)

  it('an export job with expiresIn tags each of its objects with its days, for a lifecycle rule: plain, resumable, partitioned (manifest too)', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
    try {
      await pool.query('drop table if exists se_rgw_expiry; create table se_rgw_expiry as select g as id, g % 3 as customer from generate_series(1, 3000) g')
      const specs: Record<string, () => ExportSpec> = {
        plain: () => ({ source: fromIterable(rows(10)), format: csv(), key: 'expiry/plain.csv' }),
        resumable: () => ({ source: postgresKeysetSource({ pool, table: 'se_rgw_expiry', key: 'id' }), format: csv(), key: 'expiry/resumable.csv' }),
        partitioned: () => ({
          source: postgresKeysetSource({ pool, table: 'se_rgw_expiry', key: ['customer', 'id'] }),
          format: csv(),
          key: 'expiry/{customer}.csv',
          partitionBy: 'customer',
        }),
      }
      for (const [name, spec] of Object.entries(specs)) {
        const job: ExportJob = {
          id: name,
          data: {},
          attemptsMade: 0,
          opts: {},
          updateProgress: async () => {},
          updateData: async (data) => void (job.data = data),
        }
        const processor = createExportProcessor({ s3: s3.client, bucket: s3.bucket, expiryTag: true, resolve: () => ({ ...spec(), expiresIn: 45 * 86_400 }) })
        const result = await processor(job)
        const keys = [result.location.key, ...(result.partitions ?? []).flatMap((p) => p.locations.map((l) => l.key))]
        expect(keys.length).toBe(name === 'partitioned' ? 4 : 1)
        for (const key of keys) {
          const { TagSet } = await s3.client.send(new GetObjectTaggingCommand({ Bucket: s3.bucket, Key: key }))
          expect(TagSet, `${name}: ${key}`).toEqual([{ Key: 'stream-export-expires-in-days', Value: '45' }])
        }
      }
    } finally {
      await pool.query('drop table if exists se_rgw_expiry')
      await pool.end()
    }
  }, 60_000)
})
