// A partitioned export that saves checkpoints and continues from one (`partitionBy.checkpoint`):
// interrupted mid-way, it keeps what its checkpoint holds and nothing else; the run continuing it
// writes no kept partition again, removes what the interrupted run left past the checkpoint, and
// ends with the same files as an export never interrupted (real PostgreSQL, files, the S3 test server).
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { CreateMultipartUploadCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, exportStream, fileSink, postgresKeysetSource, s3Sink, type ExportError, type Manifest, type PartitionCheckpoint } from '../src/index.js'
import { createExportProcessor, type ExportJob } from '../src/bullmq.js'
import { databaseUrl } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

const TABLE = 'se_partitions_resume'
const ROWS = 30_000
const CUSTOMERS = 300
let pool: pg.Pool
let s3: TestS3
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.query(
    `create table ${TABLE} as select i as id, 'c' || lpad(((i * 7919) % ${CUSTOMERS})::text, 4, '0') as customer, (i % 997) * 1.25 as amount from generate_series(1, ${ROWS}) i`,
  )
  await pool.query(`alter table ${TABLE} add primary key (customer, id)`)
  s3 = await startS3()
})
afterAll(async () => {
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.end()
  await s3.close()
})

// Rows ordered by the partition column: a keyset over (customer, id).
const source = (after?: unknown) => postgresKeysetSource({ pool, table: TABLE, key: ['customer', 'id'], after, batchSize: 1000 })

/** Every file under `dir`, relative to it, with its bytes. */
async function filesUnder(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>()
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }))
    if (entry.isFile()) files.set(join(entry.parentPath, entry.name).slice(dir.length + 1), await readFile(join(entry.parentPath, entry.name)))
  return files
}

/** A partition's CSV by its customer, from a manifest and the files it lists. */
async function byCustomer(dir: string, manifest: Manifest): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const part of manifest.parts) out.set(String(part.partition!.customer), await readFile(join(dir, part.name), 'utf8'))
  return out
}

describe('partitionBy.checkpoint, files', () => {
  it('aborted mid-way: only what the checkpoint holds is left; the run continuing it rewrites none of it and ends as an uninterrupted export', async () => {
    const whole = await tempDir()
    const reference = await exportStream({ source: source(), format: csv(), sink: fileSink({ path: join(whole, '{customer}.csv') }), partitionBy: 'customer' })
    expect(reference.partitions).toHaveLength(CUSTOMERS)

    const dir = await tempDir()
    const saved: PartitionCheckpoint[] = []
    const controller = new AbortController()
    const error = (await exportStream({
      source: source(),
      format: csv(),
      sink: fileSink({ path: join(dir, '{customer}.csv') }),
      signal: controller.signal,
      partitionBy: {
        by: 'customer',
        maxOpen: 4,
        checkpoint: {
          intervalMs: 0,
          save: async (checkpoint) => {
            saved.push(checkpoint)
            if (checkpoint.partitions.length >= 100) controller.abort()
          },
        },
      },
    }).catch((e: unknown) => e)) as ExportError
    expect(error.code).toBe('ERR_ABORTED')
    const checkpoint = saved.at(-1)!
    expect(checkpoint.partitions.length).toBeGreaterThanOrEqual(100)
    expect(checkpoint.partitions.length).toBeLessThan(CUSTOMERS)
    // Plain JSON, as a job store keeps it; the key is where the next partition's rows begin.
    expect(JSON.parse(JSON.stringify(checkpoint))).toEqual(checkpoint)
    const last = checkpoint.partitions.at(-1)!
    expect(checkpoint.after).toEqual([last.values.customer, expect.any(Number)])
    expect(checkpoint.rows).toBe(checkpoint.partitions.reduce((sum, partition) => sum + partition.rows, 0))
    // Left: exactly the parts the checkpoint holds.
    const kept = checkpoint.partitions.flatMap((partition) => partition.parts.map((part) => part.name)).sort()
    expect([...(await filesUnder(dir)).keys()].sort()).toEqual(kept)
    const keptTimes = await Promise.all(kept.map(async (name) => (await stat(join(dir, name))).mtimeMs))

    // What a crashed run would leave past its checkpoint (a part of its run), and files not its own.
    await writeFile(join(dir, `c0299-${checkpoint.run}-00002.csv`), 'stale\n')
    await writeFile(join(dir, 'c0299-0badc0de-00001.csv'), 'another run\n')
    await writeFile(join(dir, `notes-${checkpoint.run}.txt`), 'mine\n')

    const reports: Array<{ rows: number; totalRows?: number; percent?: number }> = []
    const resumed = await exportStream({
      source: postgresKeysetSource({ pool, table: TABLE, key: ['customer', 'id'], after: checkpoint.after, batchSize: 1000, count: 'exact' }),
      format: csv(),
      // (A path as `./` and relative: what the interrupted run left is found under it all the same.)
      sink: fileSink({ path: `./${relative(process.cwd(), dir)}/{customer}.csv` }),
      partitionBy: { by: 'customer', checkpoint: { from: checkpoint, save: (c) => void saved.push(c) } },
      progressIntervalMs: 1,
      onProgress: (progress) => void reports.push(progress),
    })
    expect(resumed.rows).toBe(ROWS)
    // Progress counts the kept rows on both sides: the source counts only those after the key
    // (until the end, a report says at most 99.9%).
    expect(reports.at(-1)).toMatchObject({ rows: ROWS, totalRows: ROWS, percent: 100 })
    const counted = reports.slice(0, -1).filter((report) => report.totalRows !== undefined)
    expect(counted.length).toBeGreaterThan(0)
    expect(counted.every((report) => report.totalRows === ROWS && Math.abs(report.percent! - Math.min((report.rows / ROWS) * 100, 99.9)) < 1e-6)).toBe(true)
    expect(resumed.partitions).toHaveLength(CUSTOMERS)
    const manifest = JSON.parse(await readFile(join(dir, 'partitions.manifest.json'), 'utf8')) as Manifest
    expect(manifest.rows).toBe(ROWS)
    expect(manifest.parts.every((part) => part.name.includes(`-${checkpoint.run}-`))).toBe(true)
    // The kept partitions were not written again.
    expect(await Promise.all(kept.map(async (name) => (await stat(join(dir, name))).mtimeMs))).toEqual(keptTimes)
    // Every partition holds what the uninterrupted export's does.
    const wholeManifest = JSON.parse(await readFile(join(whole, 'partitions.manifest.json'), 'utf8')) as Manifest
    expect(await byCustomer(dir, manifest)).toEqual(await byCustomer(whole, wholeManifest))
    const left = [...(await filesUnder(dir)).keys()].sort()
    expect(left).toEqual(
      [...manifest.parts.map((part) => part.name), 'partitions.manifest.json', 'c0299-0badc0de-00001.csv', `notes-${checkpoint.run}.txt`].sort(),
    )
  }, 60_000)

  it('a save that fails fails the export, and keeps only what the last saved checkpoint holds', async () => {
    const dir = await tempDir()
    const saved: PartitionCheckpoint[] = []
    const error = (await exportStream({
      source: source(),
      format: csv(),
      sink: fileSink({ path: join(dir, '{customer}.csv') }),
      partitionBy: {
        by: 'customer',
        checkpoint: {
          intervalMs: 0,
          save: async (checkpoint) => {
            if (saved.length > 0 && checkpoint.partitions.length >= 50) throw new Error('the job store is gone')
            saved.push(checkpoint)
          },
        },
      },
    }).catch((e: unknown) => e)) as ExportError
    expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringMatching(/Saving the checkpoint failed: the job store is gone/) })
    expect(saved.at(-1)!.partitions.length).toBeLessThan(50)
    const kept = saved
      .at(-1)!
      .partitions.flatMap((partition) => partition.parts.map((part) => part.name))
      .sort()
    expect([...(await filesUnder(dir)).keys()].sort()).toEqual(kept)
  })

  it('rows not ordered by partition (pairs of customers interleaved): a checkpoint keeps a partition only with every row of it before its key', async () => {
    // Rows by id; customers two at a time, alternating: c0000 c0001 c0000 ... then c0002 c0003 ...
    const table = `${TABLE}_pairs`
    await pool.query(`drop table if exists ${table}`)
    await pool.query(
      `create table ${table} as select i as id, 'c' || lpad((2 * ((i - 1) / 100) + i % 2)::text, 4, '0') as customer from generate_series(1, 20000) i`,
    )
    await pool.query(`alter table ${table} add primary key (id)`)
    const byId = (after?: unknown) => postgresKeysetSource({ pool, table, key: 'id', after, batchSize: 500 })
    const whole = await tempDir()
    await exportStream({ source: byId(), format: csv(), sink: fileSink({ path: join(whole, '{customer}.csv') }), partitionBy: { by: 'customer', maxOpen: 4 } })

    const dir = await tempDir()
    const saved: PartitionCheckpoint[] = []
    const controller = new AbortController()
    const options = (checkpoint: object) => ({
      format: csv(),
      sink: fileSink({ path: join(dir, '{customer}.csv') }),
      partitionBy: { by: 'customer', maxOpen: 4, checkpoint: { intervalMs: 0, save: (c: PartitionCheckpoint) => void saved.push(c), ...checkpoint } },
    })
    const error = (await exportStream({
      source: byId(),
      signal: controller.signal,
      ...options({ save: (c: PartitionCheckpoint) => void (saved.push(c), c.partitions.length >= 60 && controller.abort()) }),
    }).catch((e: unknown) => e)) as ExportError
    expect(error.code).toBe('ERR_ABORTED')
    for (const checkpoint of saved) {
      expect(checkpoint.partitions.length % 2).toBe(0) // never one of a pair without the other
      expect(Number(checkpoint.after) % 100).toBe(0) // after the last row of a pair
    }
    const checkpoint = saved.at(-1)!
    await exportStream({ source: byId(checkpoint.after), ...options({ from: checkpoint }) })
    const manifest = JSON.parse(await readFile(join(dir, 'partitions.manifest.json'), 'utf8')) as Manifest
    const wholeManifest = JSON.parse(await readFile(join(whole, 'partitions.manifest.json'), 'utf8')) as Manifest
    expect(manifest.parts).toHaveLength(400)
    expect(await byCustomer(dir, manifest)).toEqual(await byCustomer(whole, wholeManifest))
    await pool.query(`drop table ${table}`)
  }, 60_000)

  it('needs a keyset source, and a checkpoint that save was given', async () => {
    const dir = await tempDir()
    const run = (partitionBy: object, from = source()) =>
      exportStream({ source: from, format: csv(), sink: fileSink({ path: join(dir, '{customer}.csv') }), partitionBy: partitionBy as never }).catch(
        (e: unknown) => e as ExportError,
      )
    const keyless = await run({ by: 'customer', checkpoint: { save: () => {} } }, [{ customer: 'a' }] as never)
    expect(keyless).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('partitionBy.checkpoint') })
    expect(await run({ by: 'customer', checkpoint: { save: () => {}, from: { run: 'x' } } })).toMatchObject({ code: 'ERR_INVALID_OPTION' })
    expect(await run({ by: 'customer', checkpoint: { save: () => {}, every: 1 } })).toMatchObject({ code: 'ERR_INVALID_OPTION' })
    expect(await readdir(dir)).toEqual([])
  })
})

describe('partitionBy.checkpoint, S3', () => {
  /** A job as BullMQ gives it to the processor, with its data kept in memory. */
  const jobOf = (id: string, data: ExportJob['data'], { attempts = 3, attemptsMade = 0 } = {}): ExportJob => {
    const job: ExportJob = {
      id,
      data,
      attemptsMade,
      opts: { attempts },
      updateProgress: () => Promise.resolve(),
      updateData: (next) => Promise.resolve(void (job.data = next)),
    }
    return job
  }

  it('a job retried after a crash before its first checkpoint: what the crashed attempt wrote is removed first', async () => {
    const processor = createExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      resolve: (_job, { after }) => ({ source: source(after), format: csv(), key: 'crashed/{customer}.csv', partitionBy: 'customer' }),
    })
    // The job's data as the crashed attempt left it: its run, and no checkpoint yet.
    const run = '0c0ffee0'
    const job = jobOf(
      'crashed-1',
      { exportPartitions: { bucket: s3.bucket, template: 'crashed/{customer}.csv', checkpoint: { version: 1, run, rows: 0, partitions: [] } } },
      { attemptsMade: 1 },
    )
    for (const key of [`crashed/c0001-${run}-00002.csv`, 'crashed/c0001-0badc0de-00001.csv'])
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: 'x' }))
    // The multipart upload of a part larger than partSize it was writing, and another run's.
    for (const key of [`crashed/c0002-${run}-00001.csv`, 'crashed/c0002-0badc0de-00001.csv'])
      await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }))
    const result = await processor(job)
    expect(result.rows).toBe(ROWS)
    const listed = ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'crashed/' }))).Contents ?? []).map((o) => o.Key!)
    expect(listed).toContain('crashed/c0001-0badc0de-00001.csv') // another run's
    expect(listed).not.toContain(`crashed/c0001-${run}-00002.csv`)
    expect(listed).toHaveLength(CUSTOMERS + 2)
    expect(await s3.openUploads()).toEqual(['crashed/c0002-0badc0de-00001.csv'])
    await s3.abortAll()
  })

  it("a job's result is plain JSON, as BullMQ stores it: bigint partition values as their text", async () => {
    const processor = createExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      resolve: (_job, { after }) => ({
        source: source(after),
        format: csv(),
        key: 'big/{bucket}.csv',
        partitionBy: { by: (row) => ({ bucket: BigInt(Number(row.id) % 3) }) },
      }),
    })
    const job = jobOf('big-1', {})
    const result = await processor(job)
    expect(JSON.parse(JSON.stringify(result))).toEqual(result)
    expect(job.data.exportPartitions).toBeUndefined() // done: a retry of the completed job is a new export
    expect(result.partitions!.map((partition) => partition.values.bucket).sort()).toEqual(['0', '1', '2'])
  })

  it('refuses an attempt whose resolve gives another kind of export than the earlier attempt (it was given where that one stopped)', async () => {
    const partitioned = {
      bucket: s3.bucket,
      template: 'kinds/{customer}.csv',
      checkpoint: { version: 1 as const, run: '0c0ffee1', after: ['c0100', 5], rows: 0, partitions: [] },
    }
    const plain = createExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      resolve: (_job, { after }) => ({ source: source(after), format: csv(), key: 'kinds/all.csv' }),
    })
    await expect(plain(jobOf('kinds-1', { exportPartitions: partitioned }))).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/earlier attempt of this job ran a partitioned export/),
    })
    const byCustomer = createExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      resolve: (_job, { after }) => ({ source: source(after), format: csv(), key: 'kinds/{customer}.csv', partitionBy: 'customer' }),
    })
    const checkpoint = { uploadId: 'u', bucket: s3.bucket, key: 'kinds/all.csv', parts: [], rows: 10, bytes: 100, lastKey: ['c0100', 5] }
    await expect(byCustomer(jobOf('kinds-2', { exportCheckpoint: checkpoint }))).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
    // Neither kept a connection of the pool (of two) checked out.
    expect((await pool.query('select 1 as one')).rows).toEqual([{ one: 1 }])
    expect(pool.idleCount).toBe(pool.totalCount)
  })

  it('a final failure whose manifest write may yet land (a 500) keeps every part: the manifest would list them', async () => {
    const processor = createExportProcessor({
      s3: s3.client,
      bucket: s3.bucket,
      resolve: (_job, { after }) => ({ source: source(after), format: csv(), key: 'unknown/{customer}.csv', partitionBy: 'customer' }),
    })
    s3.inject({ op: 'PutObject', match: (key) => key === 'unknown/partitions.manifest.json', action: 500 })
    const error = (await processor(jobOf('unknown-1', {}, { attempts: 1 })).catch((e: unknown) => e)) as ExportError
    s3.clearFaults()
    expect(error.message).toMatch(/whether it landed is unknown/)
    const listed = ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'unknown/' }))).Contents ?? []).map((o) => o.Key!)
    expect(listed).toHaveLength(CUSTOMERS)
  })

  it('a part that fails mid-way (transformed rows): the checkpoint held is kept, the rest removed; the continuing run puts no kept object again', async () => {
    const template = 'statements/{customer}.csv'
    const saved: PartitionCheckpoint[] = []
    s3.inject({ op: 'PutObject', match: (key) => key.startsWith('statements/c0200-'), action: 500, times: 20 })
    const transform = (row: Record<string, unknown>) => ({ ...row, amount: Number(row.amount) * 2 })
    const error = (await exportStream({
      source: source(),
      format: csv(),
      transform,
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: template }),
      partitionBy: { by: 'customer', checkpoint: { intervalMs: 0, save: (checkpoint) => void saved.push(checkpoint) } },
    }).catch((e: unknown) => e)) as ExportError
    s3.clearFaults()
    expect(error.code).toBe('ERR_SINK')
    const checkpoint = saved.at(-1)!
    expect(checkpoint.partitions.length).toBeGreaterThan(150)
    expect(checkpoint.partitions.length).toBeLessThanOrEqual(200)
    const keys = async () =>
      ((await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'statements/', MaxKeys: 1000 }))).Contents ?? []).map((o) => o.Key!).sort()
    const kept = checkpoint.partitions.flatMap((partition) => partition.parts.map((part) => `statements/${part.name}`)).sort()
    expect(await keys()).toEqual(kept)
    // A crashed run's object past the checkpoint.
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `statements/c0250-${checkpoint.run}-00002.csv`, Body: 'stale' }))

    const puts = (key: string) => s3.requests.get(`PutObject ${key}`) ?? 0
    const before = kept.map(puts)
    const resumed = await exportStream({
      source: source(checkpoint.after),
      format: csv(),
      transform,
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: template }),
      partitionBy: { by: 'customer', checkpoint: { from: checkpoint, save: () => {} } },
    })
    expect(resumed.rows).toBe(ROWS)
    expect(kept.map(puts)).toEqual(before)
    const listed = await keys()
    expect(listed).toEqual([...resumed.parts!.map((part) => (part.location as { key: string }).key), 'statements/partitions.manifest.json'].sort())
    const first = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: listed[0]! }))
    const text = await first.Body!.transformToString()
    expect(text.split('\n')[0]).toBe('id,customer,amount')
  }, 60_000)
})
