// After an export to Azure Blob Storage: the expiry processor deletes its blobs at their time (and
// sends a notification still due with a SAS link), and verifyExport reads its blobs back against
// the manifest or the export's checksum. Azurite through the fault proxy, real Postgres and Redis.
import type { ContainerClient } from '@azure/storage-blob'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../examples/statements.mjs'
import {
  azureBlobSink,
  createExpiryProcessor,
  csv,
  exportStream,
  fromIterable,
  verifyExport,
  type AzureLocation,
  type ExportLog,
  type NewExportLogEntry,
} from '../src/index.js'
import type { ExportJobResult, ExportNotification } from '../src/bullmq.js'
import { startAzure, type TestAzure } from './fixtures/azurite.js'
import { exportLogTable, redisUp, runJobs } from './fixtures/delivery.js'

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

  it('a deletion Azure refuses is tried again after retryMs; an entry of another container is never deleted here, and says so', async () => {
    let clock = Date.now()
    const now = () => new Date(clock)
    const { results } = await runJobs({ container, log, now }, [{ rows: 10, key: 'refused/{jobId}.csv.gz', expiresIn: 60 }])
    const blob = ok(results[0]).location.key
    const elsewhere = entry({ id: `other/${Date.now()}`, bucket: 'another', keys: [blob], expiresAt: new Date(clock + 60_000) })
    await log.record([elsewhere], {})
    clock += 61_000
    azure.fault = ({ method, url }) => (method === 'DELETE' && url.pathname.endsWith(blob) ? 503 : undefined)
    const failed = await createExpiryProcessor({ container, log, now, retryMs: 60_000 })()
    azure.fault = () => undefined
    expect(failed.deleted).toEqual([])
    expect(failed.failed).toHaveLength(2)
    const refused = failed.failed.find((f) => f.id !== elsewhere.id)!
    expect(refused.error).toMatch(/injected by the test/)
    expect(failed.failed).toContainEqual({ id: elsewhere.id, error: "In container another, not this processor's (after): not deleted here" })
    expect(await exists(blob)).toBe(true)
    expect((await createExpiryProcessor({ container, log, now })()).deleted).toEqual([]) // waits retryMs
    clock += 60_001
    expect((await createExpiryProcessor({ container, log, now })()).deleted).toEqual([refused.id])
    expect(await exists(blob)).toBe(false)
    expect(await log.get(elsewhere.id)).toMatchObject({ deletedAt: null })
  }, 60_000)

  it('a notification no attempt sent is sent by the expiry processor, with a SAS link that downloads the blob as its file name', async () => {
    await exportStream({
      source: fromIterable(statements(500)),
      format: csv(),
      sink: azureBlobSink({ containerClient: container, blobName: 'notify/one.csv' }),
    })
    const at = new Date()
    const due = entry({ id: `notify/${Date.now()}`, bucket: 'after', keys: ['notify/one.csv'], filename: 'statement.csv', notify: true })
    await log.record([due], { notifyUntil: new Date(at.getTime() + 1000) })
    const sent: ExportNotification[] = []
    const run = await createExpiryProcessor({ container, log, notify: (n) => void sent.push(n), now: () => new Date(at.getTime() + 1001) })()
    expect(run.notified).toEqual([due.id])
    const download = await fetch(sent[0]!.url!)
    expect(download.headers.get('content-disposition')).toMatch(/filename="statement\.csv"/)
    expect(Buffer.from(await download.arrayBuffer()).equals(await container.getBlockBlobClient('notify/one.csv').downloadToBuffer())).toBe(true)
  })

  it('refuses both s3 and container, and neither', () => {
    const s3 = { send: () => Promise.resolve({}) }
    expect(() => createExpiryProcessor({ container, s3, log } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
    expect(() => createExpiryProcessor({ log } as never)).toThrow(/`s3` to be an S3Client \(or an Azure `container`\)/)
  })
})

function entry(fields: Partial<NewExportLogEntry> & Pick<NewExportLogEntry, 'id' | 'bucket' | 'keys'>): NewExportLogEntry {
  return {
    exportId: fields.id,
    jobId: '1',
    run: 'r1',
    partition: null,
    requestedBy: null,
    fingerprint: null,
    format: 'csv',
    rows: 1,
    bytes: 1,
    checksum: null,
    filename: null,
    labels: null,
    createdAt: new Date(),
    expiresAt: null,
    notify: false,
    ...fields,
  }
}

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
  })
})
