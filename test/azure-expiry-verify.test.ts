// After an export to Azure Blob Storage: the expiry processor deletes its blobs at their time (and
// sends a notification still due with a SAS link), and verifyExport reads its blobs back against
// the manifest or the export's checksum. Azurite through the fault proxy, real Postgres and Redis.
import { S3Client } from '@aws-sdk/client-s3'
import type { ContainerClient } from '@azure/storage-blob'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../examples/statements.mjs'
import {
  azureBlobSink,
  createExpiryProcessor,
  csv,
  exportStream,
  fromIterable,
  presignEntry,
  verifyExport,
  type AzureLocation,
  type VerifyOptions,
  type ExportLog,
} from '../src/index.js'
import type { ExportJobResult, ExportNotification } from '../src/bullmq.js'
import { startAzure, type TestAzure } from './fixtures/azurite.js'
import { exportLogTable, logEntry, redisUp, runJobs } from './fixtures/delivery.js'

let azure: TestAzure
let container: ContainerClient
beforeAll(async () => {
  azure = await startAzure()
  container = await azure.container('after')
}, 60_000)
afterAll(() => azure?.close())

const exists = (blob: string) => container.getBlockBlobClient(blob).exists()
const flip = (bytes: Buffer, at: number) => Buffer.concat([bytes.subarray(0, at), Buffer.from([bytes[at]! ^ 1]), bytes.subarray(at + 1)])
const rewrite = async (blob: string, change: (bytes: Buffer) => Buffer) => {
  const bytes = change(await container.getBlockBlobClient(blob).downloadToBuffer())
  await container.getBlockBlobClient(blob).upload(bytes, bytes.length)
}

describe.skipIf(!redisUp)(`expiry on Azure${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  let log: ExportLog
  const logTable = exportLogTable('se_azure_expiry')
  beforeAll(() => void ({ log } = logTable.current()))
  const ok = (result: ExportJobResult | Error | undefined): ExportJobResult => {
    if (!result || result instanceof Error) throw result ?? new Error('no result')
    return result
  }

  it('at its expiry a partitioned export is deleted blob by blob (parts, manifest); its SAS links stop working; the log says deleted', async () => {
    let clock = Date.now()
    const now = () => new Date(clock)
    const { results } = await runJobs({ container, log, now }, [
      { rows: 3000, customers: 3, partitionBy: 'customer', key: 'expiring/{jobId}/{customer}.csv.gz', filename: '{customer}.csv.gz', expiresIn: 60 },
    ])
    const result = ok(results[0])
    const blobs = [result.location.key, ...result.partitions!.flatMap((p) => p.locations.map((l) => l.key))]
    expect(blobs).toHaveLength(4)
    const links = [result.url, ...result.partitions!.flatMap((p) => p.urls)]
    for (const link of links) expect((await fetch(link)).status).toBe(200)
    expect((await createExpiryProcessor({ container, log, now })()).deleted).toEqual([]) // not yet

    clock += 61_000
    azure.requests.length = 0
    const run = await createExpiryProcessor({ container, log, now })()
    expect(run).toMatchObject({ deleted: expect.arrayContaining([expect.any(String)]), failed: [] })
    expect(run.deleted).toHaveLength(4)
    for (const blob of blobs) {
      expect(await exists(blob)).toBe(false)
      expect(azure.requests.filter((r) => r.method === 'DELETE' && r.url.startsWith(`/devstoreaccount1/after/${blob}`))).toHaveLength(1)
    }
    for (const link of links) expect([403, 404]).toContain((await fetch(link)).status)
    for (const id of run.deleted) expect((await log.get(id))?.deletedAt?.getTime()).toBe(clock)
  }, 60_000)

  it('a deletion Azure refuses is tried again after retryMs; in a log shared with other stores each processor takes its own entries only', async () => {
    let clock = Date.now()
    const now = () => new Date(clock)
    const { results } = await runJobs({ container, log, now }, [{ rows: 10, key: 'refused/{jobId}.csv.gz', expiresIn: 60 }])
    const blob = ok(results[0]).location.key
    // Another store's entry (an S3 bucket, or another container) naming the same key: expired, its notification due.
    const elsewhere = logEntry({ id: `other/${Date.now()}`, bucket: 'another', keys: [blob], expiresAt: new Date(clock + 60_000), notify: true })
    await log.record([elsewhere], { notifyUntil: new Date(clock) })
    clock += 61_000
    azure.fault = ({ method, url }) => (method === 'DELETE' && url.pathname.endsWith(blob) ? 503 : undefined)
    const sent: ExportNotification[] = []
    const failed = await createExpiryProcessor({ container, log, now, retryMs: 60_000, notify: (n) => void sent.push(n) })()
    azure.fault = () => undefined
    expect(failed.deleted).toEqual([])
    expect(failed.failed).toEqual([{ id: expect.any(String), error: expect.stringMatching(/injected by the test/) }])
    expect(sent.map((n) => n.entryId)).not.toContain(elsewhere.id)
    expect(await exists(blob)).toBe(true)
    expect((await createExpiryProcessor({ container, log, now })()).deleted).toEqual([]) // waits retryMs
    clock += 60_001

    // An export log of your own that leases every entry, whatever the buckets: the other store's entry is still not acted on.
    const careless: ExportLog = { ...log, lease: (pick, { buckets: _, ...options }, work) => log.lease(pick, options, work) }
    const byCareless = await createExpiryProcessor({ container, log: careless, now, retryMs: 1 })()
    expect(byCareless.deleted).toEqual([failed.failed[0]!.id])
    expect(byCareless.failed).toEqual([{ id: elsewhere.id, error: "In another, not this processor's store (after): the log ignored its buckets" }])
    expect(await exists(blob)).toBe(false)
    clock += 1000

    // An S3 processor on the same log, given its buckets: the other store's entry is its own, the container's is not.
    const s3 = new S3Client({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' }, maxAttempts: 1 })
    const byS3 = await createExpiryProcessor({ s3, buckets: ['another'], log, now })()
    s3.destroy()
    expect(byS3.failed.map((f) => f.id)).toEqual([elsewhere.id]) // (nothing listens there)
    expect(byS3.deleted).toEqual([])

    expect(await log.get(elsewhere.id)).toMatchObject({ deletedAt: null, notifyFailures: 0 })
    await expect(presignEntry(container, { ...elsewhere, expiresAt: null }, 60, now())).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/az:\/\/another\//),
    })
  }, 60_000)

  it('a notification no attempt sent is sent by the expiry processor, with a SAS link that downloads the blob as its file name', async () => {
    await exportStream({
      source: fromIterable(statements(500)),
      format: csv(),
      sink: azureBlobSink({ containerClient: container, blobName: 'notify/one.csv' }),
    })
    const at = new Date()
    const due = logEntry({ id: `notify/${Date.now()}`, bucket: 'after', keys: ['notify/one.csv'], filename: 'statement.csv', notify: true })
    await log.record([due], { notifyUntil: new Date(at.getTime() + 1000) })
    const sent: ExportNotification[] = []
    const run = await createExpiryProcessor({ container, log, notify: (n) => void sent.push(n), now: () => new Date(at.getTime() + 1001) })()
    expect(run.notified).toEqual([due.id])
    const download = await fetch(sent[0]!.url!)
    expect(download.headers.get('content-disposition')).toMatch(/filename="statement\.csv"/)
    expect(Buffer.from(await download.arrayBuffer()).equals(await container.getBlockBlobClient('notify/one.csv').downloadToBuffer())).toBe(true)
  })

  it('a blob with snapshots (taken by its owner) is not deleted: the run reports it', async () => {
    const snapped = container.getBlockBlobClient('snapped/one.csv')
    await snapped.upload('id\n1\n', 5)
    await snapped.createSnapshot()
    let clock = Date.now()
    const kept = logEntry({ id: `snapped/${clock}`, bucket: 'after', keys: ['snapped/one.csv'], expiresAt: new Date(clock) })
    await log.record([kept], {})
    clock += 1000
    const run = await createExpiryProcessor({ container, log, now: () => new Date(clock) })()
    expect(run.failed).toEqual([{ id: kept.id, error: expect.stringMatching(/snapshot/i) }])
    expect(await snapped.exists()).toBe(true)
  })

  it("an entry's key with a '..' segment never reaches another container's blob: reported, nothing deleted", async () => {
    const victims = await azure.container('victims')
    await victims.getBlockBlobClient('v.csv').upload('id\n1\n', 5)
    let clock = Date.now()
    const dotted = logEntry({ id: `dotted/${clock}`, bucket: 'after', keys: ['../victims/v.csv'], expiresAt: new Date(clock) })
    await log.record([dotted], {})
    clock += 1000
    const run = await createExpiryProcessor({ container, log, now: () => new Date(clock) })()
    expect(run.failed).toEqual([{ id: dotted.id, error: expect.stringMatching(/has a '\.' or '\.\.' segment/) }])
    expect(await victims.getBlockBlobClient('v.csv').exists()).toBe(true)
  })

  it('refuses both s3 and container, neither, and buckets with a container', () => {
    const s3 = { send: () => Promise.resolve({}) }
    expect(() => createExpiryProcessor({ container, s3, log })).toThrow(/`s3` to be unset with an Azure `container`/)
    expect(() => createExpiryProcessor({ log })).toThrow(/`s3` to be an S3Client \(or an Azure `container`\)/)
    expect(() => createExpiryProcessor({ container, buckets: ['after'], log })).toThrow(/`buckets` to be unset with an Azure `container`/)
    expect(() => createExpiryProcessor({ s3, buckets: [], log })).toThrow(/`buckets` to be a non-empty array/)
  })
})

describe('verifyExport on Azure', () => {
  it('a split export: every blob as its manifest records; a flipped byte in a part is named, a missing part too', async () => {
    const split = await exportStream({
      source: fromIterable(statements(6000)),
      format: csv(),
      gzip: true,
      split: { rows: 2500 },
      sink: azureBlobSink({ containerClient: container, blobName: 'v/split.csv.gz' }),
    })
    const target = 'az://after/v/split.manifest.json'
    const good = await verifyExport({ target, container })
    expect(good).toMatchObject({
      ok: true,
      objects: split.parts!.map((p) => ({ location: { container: 'after', blob: p.location.blob }, ok: true, rows: p.rows })),
    })
    const [, second, third] = split.parts!.map((p) => (p.location as AzureLocation).blob)
    await rewrite(second!, (bytes) => flip(bytes, 40))
    await container.getBlockBlobClient(third!).delete()
    const bad = await verifyExport({ target: { container: 'after', blob: 'v/split.manifest.json' }, container })
    expect(bad.ok).toBe(false)
    expect(bad.objects.map((o) => o.ok)).toEqual([true, false, false])
    expect(bad.objects[1]!.problems.join()).toMatch(/sha256: .* stored/)
    expect(bad.objects[2]!.problems).toEqual(['missing: nothing is stored there'])
  })

  it('one blob against its export checksum; without one it is refused (Azure keeps no full-object CRC); another container refused', async () => {
    const one = await exportStream({
      source: fromIterable(statements(3000)),
      format: csv(),
      sink: azureBlobSink({ containerClient: container, blobName: 'v/one.csv' }),
    })
    expect(await verifyExport({ target: 'az://after/v/one.csv', container, expected: one.checksum })).toMatchObject({ ok: true })
    await rewrite('v/one.csv', (bytes) => flip(bytes, 100))
    const against = await verifyExport({ target: 'az://after/v/one.csv', container, expected: one.checksum })
    expect(against).toMatchObject({ ok: false, objects: [{ problems: [expect.stringMatching(/^crc64nvme: /)] }] })
    await expect(verifyExport({ target: 'az://after/v/one.csv', container })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/az:\/\/after\/v\/one\.csv .*the store keeps none/),
    })
    await expect(verifyExport({ target: 'az://elsewhere/v/one.csv', container, expected: one.checksum })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/`container` to be the ContainerClient of 'elsewhere'/),
    })
    await expect(verifyExport({ target: 'az://after/v/one.csv', expected: one.checksum })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' })
    // Options that do not fit the target, and a URL that is not a target (never read as a file of that name).
    const refusals = [
      [{ target: 'az://after/v/one.csv', container, client: new S3Client({ region: 'us-east-1' }) }, /`client` to be unset for an Azure blob/],
      [{ target: 'v/one.csv', container }, /`container` to be unset for v\/one\.csv/],
      [
        { target: 'after/v/one.csv', client: new S3Client({ region: 'us-east-1' }) },
        /`client` to be unset for a file \(after\/v\/one\.csv\); an object is s3:/,
      ],
      [{ target: 'https://acct.blob.core.windows.net/after/v/one.csv?sig=secret', container }, /`target` to be a path, s3:.*got `"https:.*one\.csv\?\.\.\."`/],
      [{ target: 'az://after', container }, /`target` to be a path/],
      [{ target: undefined, container }, /`target` to be a path, a URL/],
      [{ target: { container: 'after' }, container }, /`target` to be a path, a URL/],
      [{ target: 'az://after/../victims/v.csv', container }, /'\.\.' segment/],
      [
        { target: 'az://after/v/one.csv', container, expected: { ...one.checksum!, value: 'garbage' } },
        /`expected\.value` to be the crc64nvme checksum, 8 bytes/,
      ],
      [{ target: 'az://after/v/split.manifest.json', container, expected: one.checksum }, /`expected` to be unset for a manifest/],
    ] as const
    for (const [options, message] of refusals)
      await expect(verifyExport({ expected: one.checksum, ...(options as VerifyOptions) })).rejects.toMatchObject({
        code: 'ERR_INVALID_OPTION',
        message: expect.stringMatching(message),
      })
    // A container that is not there: unreadable (ERR_SINK), not a blob reported missing.
    const gone = azure.service.getContainerClient('gone')
    await expect(verifyExport({ target: 'az://gone/v/one.csv', container: gone, expected: one.checksum })).rejects.toMatchObject({
      code: 'ERR_SINK',
      message: expect.stringMatching(/^Cannot read az:\/\/gone\/v\/one\.csv: /),
    })
  })

  it('a blob whose download is cut part-way on every try is unreadable (ERR_SINK), not reported as different', async () => {
    const one = await exportStream({
      source: fromIterable(statements(3000)),
      format: csv(),
      sink: azureBlobSink({ containerClient: container, blobName: 'v/cut.csv' }),
    })
    azure.fault = ({ method, url }) => (method === 'GET' && url.pathname.endsWith('/v/cut.csv') ? 'cut' : undefined)
    try {
      await expect(verifyExport({ target: 'az://after/v/cut.csv', container, expected: one.checksum })).rejects.toMatchObject({
        code: 'ERR_SINK',
        message: expect.stringMatching(/^Cannot read az:\/\/after\/v\/cut\.csv: /),
      })
    } finally {
      azure.fault = () => undefined
    }
    expect(await verifyExport({ target: 'az://after/v/cut.csv', container, expected: one.checksum })).toMatchObject({ ok: true })
  })
})
