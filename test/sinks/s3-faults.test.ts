// Faults injected into a real S3 server (s3rver + the fixture middleware), spoken to by the real
// SDK: every failure must fail the export and leave no object and no multipart upload behind; a
// completion that S3 performed is a success whatever arrives after it.
import { request as httpRequest } from 'node:http'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { csv, exportStream, fromIterable, s3Sink, type Progress } from '../../src/index.js'
import { startS3, type TestS3 } from '../fixtures/s3-server.js'
import { expectSameBytes, formatRows } from '../helpers.js'

const MiB = 1024 * 1024
// ~13 MB of CSV: parts of 5, 5 and 3 MiB.
const ROWS = 100_000

let s3: TestS3
/** The rows as CSV written in one go: what every export that resolves must have stored. */
let whole: Buffer
beforeAll(async () => {
  s3 = await startS3()
  whole = Buffer.from(await formatRows(csv(), statements(ROWS)))
})
afterEach(() => s3.clearFaults())
afterAll(() => s3.close())

async function expectWholeObject(key: string): Promise<void> {
  const result = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
  expectSameBytes(Buffer.from(await result.Body!.transformToByteArray()), whole)
}

// Paced like a database cursor (a pause every 10,000 rows), so that a part can fail while later
// rows are still being read, as it does in production.
async function* paced() {
  let i = 0
  for (const row of statements(ROWS)) {
    if (++i % 10_000 === 0) await new Promise((resolve) => setTimeout(resolve, 25))
    yield row
  }
}

const run = (key: string, signal?: AbortSignal) =>
  exportStream({ source: fromIterable(paced()), format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB }), signal })

describe('s3Sink under faults', () => {
  for (const action of [500, 'close'] as const) {
    it(`a part that keeps failing (${action}) fails the export with ERR_SINK and aborts the upload`, async () => {
      const key = `faults/part-${action}.csv`
      s3.inject({ op: 'UploadPart', key, partNumber: 2, action })
      const error = await run(key).catch((e) => e)
      expect(error.code).toBe('ERR_SINK')
      expect(error.stage).toBe('sink')
      expect(error.cause).toBeDefined()
      expect(s3.requests.get(`CompleteMultipartUpload ${key}`)).toBeUndefined()
      expect(await s3.exists(key)).toBe(false)
      expect(await s3.openUploads()).toEqual([])
    }, 60_000)
  }

  it('progress goes on while the last parts upload: the final report, before the commit, has every byte acknowledged', async () => {
    const key = 'faults/slow-parts.csv'
    s3.inject({ op: 'UploadPart', key, partNumber: 3, action: 'pass', delayMs: 1000 }) // the last part: after the last row
    const reports: Progress[] = []
    let completedAt = Infinity
    s3.inject({ op: 'CompleteMultipartUpload', key, action: 'pass', onRequest: () => (completedAt = reports.length) })
    const sink = s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB })
    const result = await exportStream({ source: fromIterable(paced()), format: csv(), sink, progressIntervalMs: 50, onProgress: (p) => void reports.push(p) })
    const tail = reports.filter((p) => p.rows === ROWS && p.uploadedBytes! < result.bytes)
    expect(tail.length).toBeGreaterThanOrEqual(5) // every row written, the last part still uploading: the reports go on
    expect(tail.every((p) => p.bytes === result.bytes)).toBe(true)
    expect(tail.some((p) => p.uploadedBytes! >= 5 * MiB)).toBe(true) // parts acknowledged since the last row, part 3 not yet
    expect(reports.at(-1)).toMatchObject({ rows: ROWS, bytes: result.bytes, uploadedBytes: result.bytes })
    expect(completedAt).toBe(reports.length) // the final report came before CompleteMultipartUpload
    await expectWholeObject(key)
  }, 60_000)

  it('a part that fails once is retried and the object is whole', async () => {
    const key = 'faults/part-once.csv'
    s3.inject({ op: 'UploadPart', key, partNumber: 2, times: 1 })
    const result = await run(key)
    expect(result.rows).toBe(ROWS)
    await expectWholeObject(key)
  }, 60_000)

  it('CreateMultipartUpload failing fails the export; it never falls back to a PutObject of what is buffered', async () => {
    const key = 'faults/create.csv'
    s3.inject({ op: 'CreateMultipartUpload', key })
    const error = await run(key).catch((e) => e)
    expect(error.code).toBe('ERR_SINK')
    expect(s3.requests.get(`PutObject ${key}`)).toBeUndefined()
    expect(await s3.exists(key)).toBe(false)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('an abort while CompleteMultipartUpload runs: S3 completed it, so the export resolves and the object is whole', async () => {
    const key = 'faults/abort-in-complete.csv'
    const controller = new AbortController()
    s3.inject({ op: 'CompleteMultipartUpload', key, action: 'pass', delayMs: 300, onRequest: () => controller.abort(new Error('too late')) })
    const result = await run(key, controller.signal)
    expect(controller.signal.aborted).toBe(true)
    expect(result.location).toMatchObject({ bucket: s3.bucket, key })
    // S3's multipart ETag names the part count: the completion S3 performed is the one reported.
    expect(result.location?.etag).toMatch(new RegExp(`-${s3.partsReceived.get(key)}"$`))
    await expectWholeObject(key)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('an abort while a part uploads: ERR_ABORTED, no completion, no object, no upload', async () => {
    const key = 'faults/abort-before-complete.csv'
    const controller = new AbortController()
    s3.inject({ op: 'UploadPart', key, partNumber: 3, action: 'pass', delayMs: 200, onRequest: () => controller.abort(new Error('stop')) })
    const error = await run(key, controller.signal).catch((e) => e)
    expect(error.code).toBe('ERR_ABORTED')
    expect(s3.requests.get(`CompleteMultipartUpload ${key}`)).toBeUndefined()
    expect(await s3.exists(key)).toBe(false)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('a completion whose answer is lost: the SDK retry finds no upload, the sink recognises its object and resolves', async () => {
    const key = 'faults/complete-lost.csv'
    s3.inject({ op: 'CompleteMultipartUpload', key, times: 1, action: 'pass', dropResponse: true })
    const result = await run(key)
    expect(s3.requests.get(`CompleteMultipartUpload ${key}`)).toBe(2)
    expect(result.location?.etag).toMatch(new RegExp(`-${s3.partsReceived.get(key)}"$`))
    await expectWholeObject(key)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('a failed completion fails the export and aborts the upload', async () => {
    const key = 'faults/complete-500.csv'
    s3.inject({ op: 'CompleteMultipartUpload', key })
    const error = await run(key).catch((e) => e)
    expect(error.code).toBe('ERR_SINK')
    expect(await s3.exists(key)).toBe(false)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('parts that land after AbortMultipartUpload are found by ListParts and aborted again', async () => {
    const key = 'faults/late-parts.csv'
    s3.inject({ op: 'AbortMultipartUpload', key, action: 'pass', keepUpload: true, times: 1 })
    // Part 2 fails late, so that part 1 has landed: the upload the first abort leaves holds a part.
    s3.inject({ op: 'UploadPart', key, partNumber: 2, action: 500, delayMs: 500 })
    const error = await run(key).catch((e) => e)
    expect(error.code).toBe('ERR_SINK')
    expect(s3.requests.get(`AbortMultipartUpload ${key}`)).toBe(2)
    expect(s3.requests.get(`ListParts ${key}`)).toBeGreaterThanOrEqual(1)
    expect(await s3.openUploads()).toEqual([])
  }, 60_000)

  it('the test server refuses what real S3 refuses: a small part before the last (EntityTooSmall)', async () => {
    const { CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand } = await import('@aws-sdk/client-s3')
    const key = 'faults/too-small.bin'
    const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }))
    const parts: Array<{ PartNumber: number; ETag?: string }> = []
    for (const [PartNumber, size] of [
      [1, 5 * MiB],
      [2, 20],
      [3, 5 * MiB],
    ] as const) {
      const { ETag } = await s3.client.send(new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId, PartNumber, Body: Buffer.alloc(size) }))
      parts.push({ PartNumber, ETag })
    }
    const complete = (Parts: typeof parts) =>
      s3.client.send(new CompleteMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId, MultipartUpload: { Parts } }))
    await expect(complete(parts)).rejects.toMatchObject({ name: 'EntityTooSmall' })
    await expect(complete([parts[2], parts[0]])).rejects.toMatchObject({ name: 'InvalidPartOrder' })
    await expect(complete([{ ...parts[0], ETag: '"0000"' }])).rejects.toMatchObject({ name: 'InvalidPart' })
    const done = await complete([parts[0], parts[2]])
    expect(done.ETag).toMatch(/-2"$/)
  })

  it('the test server meets an abort during a part as real S3 may: the part ends, then the upload is gone with it, and the server stands', async () => {
    const { CreateMultipartUploadCommand, AbortMultipartUploadCommand, ListPartsCommand } = await import('@aws-sdk/client-s3')
    const key = 'faults/abort-during-part.bin'
    const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }))
    const order: string[] = []
    let release!: () => void
    // Part 1 sends half its body, then waits while the abort arrives (CI once saw s3rver throw an
    // uncaught ENOENT when the abort removed the upload's folder under a part being written).
    const part = new Promise<number>((resolve, reject) => {
      const request = httpRequest(`${s3.endpoint}/${s3.bucket}/${key}?partNumber=1&uploadId=${UploadId}`, {
        method: 'PUT',
        headers: { 'content-length': 1000 },
      })
      request.on('error', reject)
      request.on('response', (response) => {
        response.resume()
        order.push('part')
        resolve(response.statusCode!)
      })
      request.write(Buffer.alloc(500), () => {
        release = () => request.end(Buffer.alloc(500))
      })
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const abort = s3.client.send(new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId })).then(() => order.push('abort'))
    await new Promise((resolve) => setTimeout(resolve, 200))
    release()
    expect(await part).toBe(200)
    await abort
    expect(order).toEqual(['part', 'abort'])
    await expect(s3.client.send(new ListPartsCommand({ Bucket: s3.bucket, Key: key, UploadId }))).rejects.toMatchObject({ name: 'NoSuchUpload' })
    expect(await s3.openUploads()).not.toContain(key)
  })

  it('the test server keeps what real S3 keeps: a part whose request was cut off mid-body is no part', async () => {
    const { CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, ListPartsCommand } = await import('@aws-sdk/client-s3')
    const key = 'faults/cut-part.bin'
    const { UploadId } = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }))
    const { ETag } = await s3.client.send(new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(100) }))
    // Part 2's sender dies after half of its body (a worker SIGKILLed mid-part).
    const cut = new Promise<void>((resolve) => {
      const request = httpRequest(`${s3.endpoint}/${s3.bucket}/${key}?partNumber=2&uploadId=${UploadId}`, {
        method: 'PUT',
        headers: { 'content-length': 1000 },
      })
      request.on('error', () => resolve())
      request.write(Buffer.alloc(500), () => setTimeout(() => request.destroy(), 100))
    })
    await cut
    await new Promise((resolve) => setTimeout(resolve, 100))
    const listed = await s3.client.send(new ListPartsCommand({ Bucket: s3.bucket, Key: key, UploadId }))
    expect(listed.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([[1, 100]])
    const done = await s3.client.send(
      new CompleteMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] } }),
    )
    expect(done.ETag).toMatch(/-1"$/)
  })
})
