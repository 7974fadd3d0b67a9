// What the S3 test server checks, against a real S3 implementation (Ceph's RADOS Gateway): the
// store's own answers, not ones we chose. It answers CompleteMultipartUpload with an empty ETag,
// ListParts of a finished upload with NoSuchKey, the completion of an aborted upload with a 500,
// and errors with an empty message.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { abortFailedExport, createExportProcessor, type ExportCheckpoint, type ExportJob } from '../src/bullmq.js'
import { csv, exportStream, postgresKeysetSource, presignDownload, s3Sink, type ExportError, type Manifest } from '../src/index.js'
import { databaseUrl } from './fixtures/postgres.js'
import { sdkChecksum } from './helpers.js'
import { realS3Available, startRealS3, type RealS3 } from './fixtures/real-s3.js'

const available = realS3Available()
const MiB = 1024 * 1024
const TABLE = 'se_real_s3_rows'
let s3: RealS3
let pool: pg.Pool

describe.skipIf(!available)(`a real S3 (Ceph RGW)${available ? '' : ' (skipped: no S3 at S3_ENDPOINT)'}`, () => {
  beforeAll(async () => {
    s3 = await startRealS3()
    pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
    await pool.query(`create table if not exists ${TABLE} (id bigint primary key, note text not null)`)
    await pool.query(`insert into ${TABLE} select i, md5(i::text) from generate_series(1, 2000) i on conflict do nothing`)
  }, 60_000)
  afterAll(async () => {
    await s3?.close()
    await pool?.end()
  })

  /** Rows of about 1 KB each, not compressible (so that a row count is a size); with `failAt`, the source fails there. */
  async function* rows(count: number, failAt?: number) {
    for (let id = 1; id <= count; id++) {
      if (id === failAt) {
        await new Promise((resolve) => setTimeout(resolve, 300)) // the parts before it land
        throw new Error('connection lost')
      }
      yield { id, blob: createHash('sha512').update(String(id)).digest('hex').repeat(8) }
    }
  }
  const head = (key: string) => s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }))
  const bytesOf = async (key: string) =>
    Buffer.from(await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToByteArray())

  it('a multipart export: its result names the ETag the store holds (the completion answers with none)', async () => {
    const key = 'sink/rows.csv'
    const result = await exportStream({ source: rows(12_000), format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB }) })
    const stored = await head(key)
    expect(stored.ETag).toMatch(/-3"$/) // three parts
    expect(result.location).toEqual({ bucket: s3.bucket, key, etag: stored.ETag })
    expect(stored.ContentLength).toBe(result.bytes)
    expect(await s3.openUploads()).toEqual([])
    // Ceph RGW 16 takes the checksums and neither verifies nor returns them: the result says so,
    // and its value is still the CRC64NVME of the bytes stored.
    expect(result.checksum).toEqual({
      algorithm: 'CRC64NVME',
      value: await sdkChecksum('CRC64NVME', await bytesOf(key)),
      bytes: result.bytes,
      verifiedByStore: false,
    })
  })

  it('a failure mid-upload aborts it: no open upload, no object, and the error is the source error', async () => {
    const key = 'sink/failed.csv'
    const error = await exportStream({
      source: rows(12_000, 8_000),
      format: csv(),
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB }),
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SOURCE', message: expect.stringContaining('connection lost') })
    expect(await s3.openUploads()).toEqual([])
    expect(await s3.exists(key)).toBe(false)
  })

  it('split output of multipart parts: each part listed with its stored ETag; a failed re-export leaves the committed one byte-identical', async () => {
    const key = 'split/rows.csv'
    const run = (failAt?: number) =>
      exportStream({
        source: rows(14_000, failAt),
        format: csv(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB }),
        split: { rows: 6_000 },
      })
    const first = await run()
    const manifest = JSON.parse((await bytesOf('split/rows.manifest.json')).toString()) as Manifest<{ key: string; etag?: string }>
    expect(manifest).toEqual(first.manifest)
    expect(manifest.parts).toHaveLength(3)
    for (const part of manifest.parts) expect(part.location.etag).toBe((await head(part.location.key)).ETag)
    const before = await Promise.all(
      (await s3.keys('split/')).map(async (k) => [
        k,
        createHash('sha256')
          .update(await bytesOf(k))
          .digest('hex'),
      ]),
    )

    const error = (await run(13_000).catch((e: unknown) => e)) as ExportError
    expect(error).toMatchObject({ code: 'ERR_SOURCE' })
    expect(error.leftBehind).toBeUndefined()
    const after = await Promise.all(
      (await s3.keys('split/')).map(async (k) => [
        k,
        createHash('sha256')
          .update(await bytesOf(k))
          .digest('hex'),
      ]),
    )
    expect(after).toEqual(before)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  /** A BullMQ job as the processor sees it: its data saved in memory. */
  const fakeJob = (id: string, data: ExportJob['data'] = {}): ExportJob & { saved: Array<ExportJob['data']> } => {
    const job = {
      id,
      data,
      saved: [] as Array<ExportJob['data']>,
      attemptsMade: 0,
      opts: { attempts: 3 },
      updateProgress: () => Promise.resolve(),
      updateData(next: ExportJob['data']) {
        job.data = next
        job.saved.push(next)
        return Promise.resolve()
      },
    }
    return job
  }
  const processor = () =>
    createExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      resolve: (_job, { after }) => ({ source: postgresKeysetSource({ pool, table: TABLE, key: 'id', after }), format: csv() }),
    })

  it('a job whose worker died right after the store completed its upload: the next attempt recognises the object and succeeds', async () => {
    const first = fakeJob('completed-1')
    const done = await processor()(first)
    // What the dead worker had saved last: every part in, the upload about to be completed.
    const ended = first.saved
      .map((data) => data.exportCheckpoint)
      .filter((checkpoint) => checkpoint?.ended)
      .at(-1) as ExportCheckpoint
    expect(ended).toBeDefined()
    const retry = await processor()(fakeJob('completed-1', { exportCheckpoint: ended }))
    expect(retry).toMatchObject({ rows: 2000, resumed: true, location: { key: done.location.key, etag: done.location.etag } })
    expect(done.location.etag).toBe((await head(done.location.key)).ETag)
  })

  it('a job whose upload was aborted meanwhile fails with ERR_SINK naming the upload, and its next attempt starts over', async () => {
    const first = fakeJob('aborted-1')
    await processor()(first)
    const ended = first.saved
      .map((data) => data.exportCheckpoint)
      .filter((checkpoint) => checkpoint?.ended)
      .at(-1) as ExportCheckpoint
    // Another upload, aborted, and no object made of the checkpoint's parts: an operator, a lifecycle rule.
    await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: ended.key }))
    const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: ended.key }))
    await abortFailedExport(s3.client, { data: { exportCheckpoint: { ...ended, uploadId: UploadId! } } })
    const job = fakeJob('aborted-1', { exportCheckpoint: { ...ended, uploadId: UploadId! } })
    const error = await processor()(job).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringContaining('no longer exists') })
    expect(job.data.exportCheckpoint).toBeUndefined() // the next attempt starts over
    expect(await processor()(job)).toMatchObject({ rows: 2000, resumed: false })
  })

  it('a partitioned job that failed mid-way: the next attempt keeps the objects its checkpoint holds (same ETags) and commits; one that finally fails leaves none', async () => {
    const table = 'se_real_s3_customers'
    await pool.query(`drop table if exists ${table}`)
    await pool.query(
      `create table ${table} as select i as id, 'c' || lpad((i % 60)::text, 2, '0') as customer, md5(i::text) as note from generate_series(1, 6000) i`,
    )
    await pool.query(`alter table ${table} add primary key (customer, id)`)
    const partitioned = (folder: string, failAt?: number) =>
      createExportProcessor({
        s3: s3.client,
        bucket: s3.bucket,
        progressIntervalMs: 1,
        resolve: (_job, { after }) => ({
          source: postgresKeysetSource({ pool, table, key: ['customer', 'id'], after }),
          format: csv(),
          key: `${folder}/{customer}.csv`,
          partitionBy: 'customer',
          transform: (row: Record<string, unknown>, index: number) => {
            if (index === failAt) throw new Error('connection lost')
            return row
          },
        }),
      })
    const job = fakeJob('partitioned-1')
    await expect(partitioned('parts', 4000)(job)).rejects.toMatchObject({ code: 'ERR_TRANSFORM' })
    const kept = job.data.exportPartitions!.checkpoint.partitions.flatMap((partition) => partition.parts.map((part) => `parts/${part.name}`))
    expect(kept.length).toBeGreaterThan(0)
    expect(await s3.keys('parts/')).toEqual(kept.sort())
    const etags = await Promise.all(kept.map(async (key) => (await head(key)).ETag))
    job.attemptsMade = 1
    const result = await partitioned('parts')(job)
    expect(result).toMatchObject({ rows: 6000, resumed: true, location: { key: 'parts/partitions.manifest.json' } })
    expect(result.partitions).toHaveLength(60)
    expect(await Promise.all(kept.map(async (key) => (await head(key)).ETag))).toEqual(etags)
    const manifest = JSON.parse((await bytesOf('parts/partitions.manifest.json')).toString()) as Manifest
    expect(manifest.rows).toBe(6000)
    expect(await s3.keys('parts/')).toEqual([...manifest.parts.map((part) => `parts/${part.name}`), 'parts/partitions.manifest.json'].sort())

    const last = fakeJob('partitioned-2')
    last.opts.attempts = 1
    await expect(partitioned('failed', 4000)(last)).rejects.toMatchObject({ code: 'ERR_TRANSFORM' })
    expect(last.data.exportPartitions!.checkpoint.partitions.length).toBeGreaterThan(0)
    expect(await s3.keys('failed/')).toEqual([])
    await pool.query(`drop table ${table}`)
  })

  it('abortFailedExport aborts an open upload with parts and resolves', async () => {
    const key = 'jobs/left-open.csv'
    const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }))
    await s3.client.send(new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(1024, 1) }))
    expect(await s3.openUploads()).toEqual([key])
    await abortFailedExport(s3.client, { data: { exportCheckpoint: { uploadId: UploadId!, bucket: s3.bucket, key, parts: [], rows: 0, bytes: 0 } } })
    expect(await s3.openUploads()).toEqual([])
  })

  it('overwrite: false: an object there is refused before any byte; one written meanwhile is not replaced, multipart (checked before the completion, which RGW does not check) or PutObject (RGW checks it)', async () => {
    const key = 'conditional/statement.csv'
    const sink = () => s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB, overwrite: false })
    const putOther = (body: string) => s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }))
    async function* writtenMeanwhile(count: number) {
      for await (const row of rows(count)) {
        if (row.id === count - 5) await putOther('written meanwhile')
        yield row
      }
    }
    for (const count of [12_000, 100]) {
      await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key }))
      const error = await exportStream({ source: writtenMeanwhile(count), format: csv(), sink: sink() }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_PRECONDITION' })
      expect((await bytesOf(key)).toString()).toBe('written meanwhile')
    }
    const early = await exportStream({ source: rows(10), format: csv(), sink: sink() }).catch((e: unknown) => e)
    expect(early).toMatchObject({ code: 'ERR_PRECONDITION', message: expect.stringContaining('overwrite: false') })
    expect(await s3.openUploads()).toEqual([])
  })

  it('a presigned link downloads the bytes the export wrote', async () => {
    const key = 'presign/rows.csv'
    await exportStream({ source: rows(100), format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key }) })
    const url = await presignDownload(s3.client, { bucket: s3.bucket, key, filename: 'rows.csv' })
    const response = await fetch(url)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="rows.csv"')
    expect(Buffer.from(await response.arrayBuffer()).equals(await bytesOf(key))).toBe(true)
  })

  it('the CLI names the store error (NoSuchBucket), not UnknownError, when the body has no message', async () => {
    const cli = join(import.meta.dirname, '..', 'dist', 'cli.js')
    const args = [cli, '--from', databaseUrl(), '--query', `select * from ${TABLE}`, '--to', 's3://se-no-such-bucket/x.csv', '--endpoint', s3.endpoint]
    const failed = await promisify(execFile)(process.execPath, args, { env: { ...process.env, ...s3.env } }).catch((e: { code: number; stderr: string }) => e)
    expect(failed).toMatchObject({ code: 5 })
    expect((failed as { stderr: string }).stderr).toContain('NoSuchBucket')
    expect((failed as { stderr: string }).stderr).not.toContain('UnknownError')
  })
})
