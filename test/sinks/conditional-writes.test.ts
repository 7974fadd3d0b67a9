// overwrite: false and ifMatch: an export never replaces what it was not told to. Refused before
// any byte where the destination says so already; at the commit (S3's conditional PutObject and
// CompleteMultipartUpload, a hard link for files) where it changed meanwhile.
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { csv, exportStream, fileSink, fromIterable, s3Sink, type S3SinkOptions } from '../../src/index.js'
import { BUCKET_OWNER, startS3, type TestS3 } from '../fixtures/s3-server.js'

const MiB = 1024 * 1024
let s3: TestS3
let dir: string
beforeAll(async () => {
  s3 = await startS3()
  dir = await mkdtemp(join(tmpdir(), 'se-conditional-'))
})
afterEach(() => s3.clearFaults())
afterAll(async () => {
  await s3.close()
  await rm(dir, { recursive: true, force: true })
})

const text = async (key: string) => await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToString()
const put = (key: string, body: string) => s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }))
// ~12 MiB of incompressible CSV (three parts of 5 MiB), or a small export (one PutObject).
const big = () => fromIterable(Array.from({ length: 15_000 }, (_, id) => ({ id, noise: randomBytes(600).toString('base64') })))
const small = () => fromIterable(statements(100))
const run = (key: string, source: ReturnType<typeof small>, options: Partial<S3SinkOptions>) =>
  exportStream({ source, format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB, ...options }) })
const requests = (op: string, key: string) => s3.requests.get(`${op} ${key}`) ?? 0

describe('overwrite: false on S3', () => {
  it('an object at the key is refused before any byte is sent (ERR_PRECONDITION), and stays as it was', async () => {
    const key = 'cond/exists.csv'
    await put(key, 'earlier')
    for (const source of [big(), small()]) {
      const error = await run(key, source, { overwrite: false }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_PRECONDITION', stage: 'sink' })
    }
    expect(requests('CreateMultipartUpload', key) + requests('PutObject', key)).toBe(1) // ours: none
    expect(await text(key)).toBe('earlier')
  }, 60_000)

  it('an object written meanwhile is not replaced: refused before the completion, or by it (its condition); the upload aborted', async () => {
    // Written while the parts upload: the check before the completion finds it.
    const key = 'cond/meanwhile-multipart.csv'
    s3.inject({ op: 'UploadPart', key, partNumber: 2, action: 'pass', onRequest: () => void put(key, 'written meanwhile') })
    expect(await run(key, big(), { overwrite: false }).catch((e: unknown) => e)).toMatchObject({ code: 'ERR_PRECONDITION' })
    expect(await text(key)).toBe('written meanwhile')
    // Written after that check, as the completion is on its way: S3 refuses the completion.
    const late = 'cond/meanwhile-complete.csv'
    s3.inject({ op: 'CompleteMultipartUpload', key: late, action: 'pass', delayMs: 300, onRequest: () => void put(late, 'written meanwhile') })
    const error = await run(late, big(), { overwrite: false }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION', cause: { name: 'PreconditionFailed' } })
    expect(await text(late)).toBe('written meanwhile')
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('a small export: the PutObject is refused when an object was written meanwhile', async () => {
    const key = 'cond/meanwhile-put.csv'
    s3.inject({ op: 'PutObject', key, times: 1, action: 'pass', delayMs: 300, onRequest: () => void put(key, 'written meanwhile') })
    const error = await run(key, small(), { overwrite: false }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION' })
    expect(await text(key)).toBe('written meanwhile')
  })

  it('a store that refuses the condition (501) fails the export saying so; nothing is written without it', async () => {
    for (const [key, source, op] of [
      ['cond/no-conditions-put.csv', small(), 'PutObject'],
      ['cond/no-conditions-complete.csv', big(), 'CompleteMultipartUpload'],
    ] as const) {
      s3.inject({ op, key, action: 501 })
      const error = await run(key, source, { overwrite: false }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringContaining('may not support conditional writes') })
      expect(await s3.exists(key)).toBe(false)
    }
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('a lost answer sent again meets our own object: the export has succeeded (PutObject and completion)', async () => {
    for (const [key, source, op] of [
      ['cond/lost-put.csv', small(), 'PutObject'],
      ['cond/lost-complete.csv', big(), 'CompleteMultipartUpload'],
    ] as const) {
      s3.inject({ op, key, times: 1, action: 'pass', dropResponse: true })
      const result = await run(key, source, { overwrite: false })
      expect(requests(op, key)).toBe(2)
      expect(result.location?.etag).toBeDefined()
      expect((await text(key)).startsWith('id,')).toBe(true)
    }
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)
})

describe('overwrite: false on S3: the edges', () => {
  it('refused at the first attempt, an object that happens to hold our very bytes is still refused (it was there before us)', async () => {
    const key = 'cond/same-bytes.csv'
    const ours = await run('cond/same-bytes-model.csv', small(), {})
    const body = await text('cond/same-bytes-model.csv')
    expect(ours.location?.etag).toBeDefined()
    s3.inject({ op: 'PutObject', key, times: 1, action: 'pass', delayMs: 300, onRequest: () => void put(key, body) })
    const error = await run(key, small(), { overwrite: false }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION' })
    expect(requests('PutObject', key)).toBe(2) // theirs and ours, not retried
  })

  it('a write that raced ours (409 ConditionalRequestConflict) is ERR_PRECONDITION, the upload aborted', async () => {
    const key = 'cond/conflict.csv'
    s3.inject({ op: 'CompleteMultipartUpload', key, action: 409 })
    const error = await run(key, big(), { overwrite: false }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION', message: expect.stringContaining('409') })
    expect(await s3.exists(key)).toBe(false)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('a principal that may write but not read (HeadObject 403): the check tells nothing, the condition sent with the commit decides', async () => {
    const key = 'cond/write-only.csv'
    s3.inject({ op: 'HeadObject', match: (k) => k.startsWith(key), action: 403 })
    expect((await run(`${key}.small`, small(), { overwrite: false })).location?.etag).toBeDefined()
    expect((await run(key, big(), { overwrite: false })).location?.etag).toBeDefined()
    const again = await run(key, small(), { overwrite: false }).catch((e: unknown) => e)
    expect(again).toMatchObject({ code: 'ERR_PRECONDITION', cause: { name: 'PreconditionFailed' } })
    expect(requests('HeadObject', key)).toBeGreaterThanOrEqual(3)
  }, 60_000)

  it('destroyed while the condition is checked: no upload is started afterwards', async () => {
    const key = 'cond/destroyed-while-checking.csv'
    s3.inject({ op: 'HeadObject', key, action: 'pass', delayMs: 300 })
    const sink = s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB, overwrite: false })
    sink.on('error', () => {})
    sink.write(randomBytes(6 * MiB))
    setTimeout(() => sink.destroy(new Error('stop')), 50)
    await new Promise((resolve) => setTimeout(resolve, 800))
    expect(requests('CreateMultipartUpload', key)).toBe(0)
    expect(await s3.openUploads()).toEqual([])
  })
})

describe('ifMatch on S3', () => {
  it('an object deleted meanwhile is ERR_PRECONDITION (S3 answers 404 NoSuchKey), nothing written', async () => {
    const key = 'cond/if-match-gone.csv'
    const { ETag } = await put(key, 'version 1')
    s3.inject({
      op: 'CompleteMultipartUpload',
      key,
      action: 'pass',
      onRequest: () => void s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key })),
      delayMs: 300,
    })
    const error = await run(key, big(), { ifMatch: ETag! }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION', message: expect.stringContaining('gone'), cause: { name: 'NoSuchKey' } })
    expect(await s3.exists(key)).toBe(false)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('replaces the object with that ETag; another is refused before any byte, and at the commit when it changed meanwhile', async () => {
    const key = 'cond/if-match.csv'
    const { ETag } = await put(key, 'version 1')
    const replaced = await run(key, small(), { ifMatch: ETag! })
    expect((await text(key)).startsWith('id,')).toBe(true)

    const early = await run(key, small(), { ifMatch: ETag! }).catch((e: unknown) => e)
    expect(early).toMatchObject({ code: 'ERR_PRECONDITION' })

    s3.inject({ op: 'CompleteMultipartUpload', key, action: 'pass', delayMs: 300, onRequest: () => void put(key, 'version 3') })
    const late = await run(key, big(), { ifMatch: replaced.location!.etag! }).catch((e: unknown) => e)
    expect(late).toMatchObject({ code: 'ERR_PRECONDITION', cause: { name: 'PreconditionFailed' } })
    expect(await text(key)).toBe('version 3')
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('is refused with overwrite: false, and for a split export (ERR_INVALID_OPTION)', async () => {
    expect(() => s3Sink({ client: s3.client, bucket: s3.bucket, key: 'k', overwrite: false, ifMatch: '"x"' })).toThrow(/ifMatch/)
    const error = await exportStream({
      source: small(),
      format: csv(),
      split: { rows: 10 },
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'cond/split.csv', overwrite: false }),
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('overwrite') })
  })
})

describe('expectedBucketOwner', () => {
  it('another owner: every request is refused (ERR_SINK), nothing is written; the owner: written', async () => {
    for (const source of [big(), small()]) {
      const error = await run('cond/owner.csv', source, { expectedBucketOwner: '999999999999' }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_SINK', cause: { name: 'AccessDenied' } })
    }
    expect(await s3.exists('cond/owner.csv')).toBe(false)
    expect(await s3.openUploads()).toEqual([])
    await run('cond/owner.csv', big(), { expectedBucketOwner: BUCKET_OWNER, overwrite: false })
    expect(await s3.exists('cond/owner.csv')).toBe(true)
  }, 60_000)
})

describe('overwrite: false on files', () => {
  const leftovers = async () => (await readdir(dir)).filter((name) => name.includes('.partial-'))

  it('a file at the path is refused before any byte is written, and stays as it was', async () => {
    const path = join(dir, 'exists.csv')
    await writeFile(path, 'earlier')
    const error = await exportStream({ source: small(), format: csv(), sink: fileSink({ path, overwrite: false }) }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION', stage: 'sink' })
    expect(await readFile(path, 'utf8')).toBe('earlier')
    expect(await leftovers()).toEqual([])
    // A dangling symbolic link is a name taken as well: refused before the rows, not at the commit.
    const link = join(dir, 'dangling.csv')
    await symlink(join(dir, 'nowhere'), link)
    const refused = await exportStream({ source: small(), format: csv(), sink: fileSink({ path: link, overwrite: false }) }).catch((e: unknown) => e)
    expect(refused).toMatchObject({ code: 'ERR_PRECONDITION', message: expect.stringContaining('before any byte') })
    expect(await readlink(link)).toBe(join(dir, 'nowhere'))
  })

  it('a file that appeared meanwhile is not replaced (the commit is a link, not a rename); a new path is written', async () => {
    const path = join(dir, 'meanwhile.csv')
    async function* rows() {
      yield* statements(50)
      await writeFile(path, 'written meanwhile')
      yield* statements(50)
    }
    const error = await exportStream({ source: fromIterable(rows()), format: csv(), sink: fileSink({ path, overwrite: false }) }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION' })
    expect(await readFile(path, 'utf8')).toBe('written meanwhile')
    expect(await leftovers()).toEqual([])

    const fresh = join(dir, 'fresh.csv')
    const result = await exportStream({ source: small(), format: csv(), sink: fileSink({ path: fresh, overwrite: false }) })
    expect(result.location).toEqual({ path: fresh })
    expect((await readFile(fresh, 'utf8')).startsWith('id,')).toBe(true)
    expect(await leftovers()).toEqual([])
  })
})
