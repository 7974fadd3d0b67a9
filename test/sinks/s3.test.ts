import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statementRow, statements } from '../../examples/statements.mjs'
import { attachment, csv, exportKey, exportStream, fromIterable, jsonArray, jsonl, presignDownload, s3Sink, type Progress } from '../../src/index.js'
import { MIN_PART_SIZE, partSizeFor } from '../../src/sinks/s3/multipart.js'
import { realS3Available, startRealS3, type RealS3 } from '../fixtures/real-s3.js'
import { startS3, type TestS3 } from '../fixtures/s3-server.js'
import { expectSameBytes, formatRows, noise } from '../helpers.js'

const MiB = 1024 * 1024

// The same suite against the S3 test server (which also counts what it received) and, when there
// is one, a real S3 (Ceph RGW): what the store does, not what we chose.
const servers: Array<[string, () => Promise<TestS3 | RealS3>]> = [
  ['the S3 test server', startS3],
  ...(realS3Available() ? [['a real S3 (Ceph RGW)', startRealS3] as [string, () => Promise<RealS3>]] : []),
]
/** What only the test server counts: the parts it received per key, the most in flight at once. */
const counts = (server: TestS3 | RealS3) => ('partsReceived' in server ? server : undefined)

describe.each(servers)('on %s', (_server, start) => {
  let s3: TestS3 | RealS3
  beforeAll(async () => {
    s3 = await start()
  })
  afterAll(() => s3.close())

  async function getObject(key: string) {
    const result = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
    return { body: Buffer.from(await result.Body!.transformToByteArray()), result }
  }

  describe('s3Sink', () => {
    it('uploads a gzipped CSV in several parts; GetObject and a presigned URL give back the rows', async () => {
      const key = exportKey({ jobId: 'big', format: 'csv', gzip: true })
      // 96 bytes of hash a row that gzip cannot shrink: ~130 bytes a row, ~12 MB gzipped for 90,000
      // rows, three 5 MiB parts (statement rows alone compress too well: 600,000 rows were needed).
      const count = 90_000
      const rows = function* () {
        let i = 0
        for (const row of statements(count)) yield { ...row, noise: noise(i++) }
      }
      const reports: Progress[] = []
      const sink = s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB })
      const result = await exportStream({
        source: fromIterable(rows()),
        format: csv(),
        gzip: { level: 1 },
        sink,
        progressIntervalMs: 50,
        onProgress: (p) => void reports.push(p),
      })
      expect(result.bytes).toBeGreaterThan(2 * 5 * MiB)
      expect(result.location).toMatchObject({ bucket: s3.bucket, key: 'exports/big.csv.gz' })
      expect(result.location?.etag).toBeTruthy()
      // Parts are cut once 5 MiB are buffered, so each is 5 MiB plus at most one chunk.
      const server = counts(s3)
      if (server) {
        expect(server.partsReceived.get(key)).toBeGreaterThanOrEqual(Math.floor(result.bytes / (5.1 * MiB)))
        expect(server.partsReceived.get(key)).toBeLessThanOrEqual(Math.ceil(result.bytes / (5 * MiB)))
        expect(server.maxPartsInFlight.get(key)).toBeLessThanOrEqual(4) // the default queueSize
      } else expect(result.location?.etag).toMatch(/-3"$/) // three parts, as the store tells
      expect(sink.uploadedBytes).toBe(result.bytes)
      // The final report comes once S3 has acknowledged every part, before the commit.
      expect(reports.at(-1)).toMatchObject({ rows: count, bytes: result.bytes, uploadedBytes: result.bytes })

      const { body } = await getObject(key)
      expect(body.length).toBe(result.bytes)
      expectSameBytes(gunzipSync(body), Buffer.from(await formatRows(csv(), rows()))) // the CSV of every row, parts joined in order

      const url = await presignDownload(s3.client, { bucket: s3.bucket, key, expiresIn: 600, filename: 'statements.csv.gz' })
      const response = await fetch(url)
      expect(response.status).toBe(200)
      expect(response.headers.get('content-disposition')).toBe('attachment; filename="statements.csv.gz"')
      // Stored as application/gzip without Content-Encoding: the download is the .gz file itself.
      expect(response.headers.get('content-type')).toBe('application/gzip')
      expect(response.headers.get('content-encoding')).toBeNull()
      expect(Buffer.from(await response.arrayBuffer()).equals(body)).toBe(true)
      expect(await s3.openUploads()).toEqual([])
    }, 120_000)

    it('stores Content-Type, Content-Encoding, Content-Disposition and metadata', async () => {
      const key = 'meta/rows.jsonl.gz'
      await exportStream({
        source: [{ a: 1 }],
        format: jsonl(),
        gzip: true,
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key, contentDisposition: attachment('Grüße.jsonl.gz'), metadata: { job: '42' } }),
      })
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }))
      expect(head.ContentType).toBe('application/gzip') // a .gz file, whatever is inside
      expect(head.ContentEncoding).toBeUndefined()
      expect(head.ContentDisposition).toBe(`attachment; filename="Gr__e.jsonl.gz"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.jsonl.gz`)
      expect(head.Metadata).toEqual({ job: '42' })

      await exportStream({
        source: [{ a: 1 }],
        format: csv(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'meta/plain.csv', contentType: 'text/plain' }),
      })
      const plain = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'meta/plain.csv' }))
      expect(plain.ContentType).toBe('text/plain')
      expect(plain.ContentEncoding).toBeUndefined()

      await exportStream({
        source: [{ a: 1 }],
        format: csv(),
        gzip: true,
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'meta/decoded.csv', contentType: 'text/csv', contentEncoding: 'gzip' }),
      })
      const decoded = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'meta/decoded.csv' }))
      expect(decoded.ContentEncoding).toBe('gzip') // explicit options win
    })

    it('an empty export is a valid object and does not hang', async () => {
      await exportStream({ source: [], format: jsonArray(), gzip: true, sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'empty.json.gz' }) })
      const { body, result } = await getObject('empty.json.gz')
      expect(JSON.parse(gunzipSync(body).toString())).toEqual([])
      expect(result.ContentType).toBe('application/gzip')

      await exportStream({ source: [], format: jsonl(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'empty.jsonl' }) })
      expect((await getObject('empty.jsonl')).body.length).toBe(0)
    })

    for (const how of ['a source failure', 'an abort'] as const) {
      it(`${how} mid-upload leaves no object and no multipart upload`, async () => {
        const key = `failed/${how.replace(/ /g, '-')}.csv`
        const controller = new AbortController()
        const sink = s3Sink({ client: s3.client, bucket: s3.bucket, key, partSize: 5 * MiB, queueSize: 2 })
        async function* rows() {
          for (let i = 0; i < 3_000_000; i++) {
            // Fail once S3 holds parts of this upload (however fast this machine is today).
            if (sink.uploadedBytes >= 5 * MiB) {
              if (how === 'an abort') {
                controller.abort(new Error('user cancelled'))
                await new Promise((r) => setImmediate(r))
              } else throw new Error('connection reset')
            }
            yield statementRow(i)
            if (i % 1000 === 0) await new Promise((r) => setImmediate(r))
          }
        }
        const error = await exportStream({ source: rows(), format: csv(), sink, signal: controller.signal }).catch((e) => e)
        expect(error.code).toBe(how === 'an abort' ? 'ERR_ABORTED' : 'ERR_SOURCE')
        expect(sink.uploadedBytes).toBeGreaterThan(5 * MiB) // parts had been uploaded before the failure
        expect(await s3.exists(key)).toBe(false)
        expect(await s3.openUploads()).toEqual([])
      }, 60_000)
    }

    it('an S3 error rejects with ERR_SINK carrying the service error', async () => {
      const error = await exportStream({
        source: [{ a: 1 }],
        format: csv(),
        sink: s3Sink({ client: s3.client, bucket: 'no-such-bucket', key: 'x.csv' }),
      }).catch((e) => e)
      expect(error.code).toBe('ERR_SINK')
      expect(error.cause.name).toBe('NoSuchBucket')
    })

    it('grows the part size so a stream of unknown length stays under 10,000 parts', () => {
      expect(partSizeFor(1, MIN_PART_SIZE)).toBe(5 * MiB)
      expect(partSizeFor(1000, MIN_PART_SIZE)).toBe(5 * MiB)
      expect(partSizeFor(1001, MIN_PART_SIZE)).toBe(10 * MiB)
      expect(partSizeFor(10_000, 8 * MiB)).toBeLessThanOrEqual(5 * 1024 * MiB)
      let capacity = 0
      for (let part = 1; part <= 10_000; part++) capacity += partSizeFor(part, MIN_PART_SIZE)
      expect(capacity / 1024 ** 4).toBeGreaterThan(4.8) // TiB reachable from a 5 MiB start (without growth: 48.8 GiB)
    })

    it('validates sizes and derives them from a memory budget', () => {
      const base = { client: s3.client, bucket: s3.bucket, key: 'k' }
      expect(() => s3Sink({ ...base, partSize: 1024 })).toThrow('Expected `partSize` to be an integer from 5 MiB (5242880) to 5 GiB, got `1024` (number)')
      expect(() => s3Sink({ ...base, memoryBudget: MiB })).toThrow('Expected `memoryBudget` to be an integer of at least 10 MiB')
      expect(() => s3Sink({ ...base, memoryBudget: 64 * MiB, partSize: 8 * MiB })).toThrow('Expected `memoryBudget` to be given without partSize and queueSize')
      expect(() => s3Sink({ ...base, client: {} as never })).toThrow('Expected `client` to be an S3Client')
      expect(() => s3Sink({ ...base, key: '' })).toThrow('Expected `key` to be a non-empty string')
    })

    it('keeps within a memory budget: one part filling, queueSize parts in flight', async () => {
      // 12 MiB budget -> queueSize 1 with 6 MiB parts: one part uploading, the next filling.
      const sink = s3Sink({ client: s3.client, bucket: s3.bucket, key: 'budget.bin', memoryBudget: 12 * MiB })
      const chunk = Buffer.alloc(256 * 1024, 7)
      for (let i = 0; i < 160; i++) if (!sink.write(chunk)) await new Promise((r) => sink.once('drain', r))
      await new Promise<void>((resolve, reject) => sink.end((error?: Error) => (error ? reject(error) : resolve())))
      const server = counts(s3)
      if (server) {
        expect(server.partsReceived.get('budget.bin')).toBe(7) // 40 MiB in 6 MiB parts
        expect(server.maxPartsInFlight.get('budget.bin')).toBe(1)
      } else expect(sink.location?.etag).toMatch(/-7"$/) // seven parts, as the store tells
      expect((await getObject('budget.bin')).body.equals(Buffer.alloc(160 * 256 * 1024, 7))).toBe(true)
    })
  })

  describe('presignDownload and exportKey', () => {
    it('makes stable keys per job', () => {
      expect(exportKey({ jobId: '42', format: csv(), gzip: true })).toBe('exports/42.csv.gz')
      expect(exportKey({ prefix: 'tenant-7/exports/', jobId: 'a1', format: jsonl() })).toBe('tenant-7/exports/a1.jsonl')
      expect(exportKey({ prefix: '', jobId: 'x', format: 'parquet' })).toBe('x.parquet')
      expect(() => exportKey({ jobId: '../etc', format: 'csv' })).toThrow('Expected `jobId` to be an id without slashes')
    })

    it('encodes non-ASCII file names per RFC 6266', () => {
      expect(attachment('report.csv')).toBe('attachment; filename="report.csv"')
      expect(attachment('relevé "mars".csv')).toBe(`attachment; filename="relev_ _mars_.csv"; filename*=UTF-8''relev%C3%A9%20%22mars%22.csv`)
    })

    it('signs a GET that expires', async () => {
      await exportStream({ source: [{ a: 1 }], format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'small.csv' }) })
      const url = new URL(await presignDownload(s3.client, { bucket: s3.bucket, key: 'small.csv', expiresIn: 60 }))
      expect(url.searchParams.get('X-Amz-Expires')).toBe('60')
      expect(await (await fetch(url)).text()).toBe('a\n1\n')
      await expect(presignDownload(s3.client, { bucket: s3.bucket, key: 'k', expiresIn: 700_000 })).rejects.toThrow('Expected `expiresIn` to be at most 604800')
    })
  })
})
