// azureBlobSink and azureResumableUpload against Azurite (a real Azure Blob Storage emulator, in
// a child process) with the real @azure/storage-blob client, through a proxy that injects faults.
import { Crc64Nvme } from '@aws-sdk/checksums/crc'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { gunzipSync } from 'node:zlib'
import { BlobSASPermissions, BlockBlobClient, type ContainerClient } from '@azure/storage-blob'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  azureBlobSink,
  azureDownloadUrl,
  azureResumableUpload,
  csv,
  exportStream,
  ExportError,
  fileSink,
  jsonl,
  type AzureCheckpoint,
  type Manifest,
} from '../../src/index.js'
import { startAzure, type TestAzure } from '../fixtures/azurite.js'
import { keyedRows, tempDir } from '../helpers.js'

let azure: TestAzure
let container: ContainerClient
beforeAll(async () => {
  azure = await startAzure()
  container = await azure.container('exports')
}, 60_000)
afterAll(() => azure?.close())

const row = (id: number) => ({ id, customer: `customer-${id % 977}`, amount: ((id * 7919) % 100_000) / 100, note: id % 13 === 0 ? 'a "quoted", note' : '' })
/** `count` rows in key order, as a keyset source over pages of 1,000 (continues after `after`). */
const rows = (count: number, after?: number) => keyedRows(count, row, after)

const blobBytes = async (name: string) => (await container.getBlockBlobClient(name).downloadToBuffer()) as Buffer
/** The blob's uncommitted blocks (none when there is no blob at all). */
const staged = async (name: string) =>
  (await container
    .getBlockBlobClient(name)
    .getBlockList('uncommitted')
    .then((list) => list.uncommittedBlocks ?? [])
    .catch(() => [])) as unknown[]
const names = async (prefix = '') => {
  const found: string[] = []
  for await (const blob of container.listBlobsFlat({ prefix, includeUncommitedBlobs: true } as never)) found.push(blob.name)
  return found.sort()
}
const plainCsv = async (count: number, gzip: boolean) => {
  const path = join(await tempDir(), 'plain')
  await exportStream({ source: rows(count), format: csv(), gzip, sink: fileSink({ path }) })
  return readFile(path)
}
const crc64 = async (bytes: Buffer) => {
  const hash = new Crc64Nvme()
  hash.update(bytes)
  return Buffer.from(await hash.digest()).toString('base64')
}

describe('azureBlobSink', () => {
  it('exports 1M rows as gzipped CSV into a block blob byte for byte a file export, with its headers, and a SAS link downloads it', async () => {
    const sink = azureBlobSink({ containerClient: container, blobName: 'big/statements.csv.gz', metadata: { job: 'j1' }, tags: { retention: '30d' } })
    const result = await exportStream({ source: rows(1_000_000), format: csv(), gzip: true, sink })
    const expected = await plainCsv(1_000_000, true)
    const stored = await blobBytes('big/statements.csv.gz')
    expect(stored.equals(expected)).toBe(true)
    expect(result.rows).toBe(1_000_000)
    expect(result.location).toMatchObject({ container: 'exports', blob: 'big/statements.csv.gz', etag: expect.any(String) })
    expect(result.checksum).toEqual({ algorithm: 'CRC64NVME', value: await crc64(stored), bytes: stored.length, verifiedByStore: false })
    const blob = container.getBlockBlobClient('big/statements.csv.gz')
    const properties = await blob.getProperties()
    expect(properties).toMatchObject({ contentType: 'application/gzip', metadata: { job: 'j1' }, etag: result.location!.etag })
    expect((await blob.getTags()).tags).toEqual({ retention: '30d' })
    expect((await blob.getBlockList('committed')).committedBlocks!.length).toBe(Math.ceil(stored.length / (8 * 1024 * 1024)))

    const url = await azureDownloadUrl(container, { blobName: 'big/statements.csv.gz', filename: 'Kontoauszug März.csv.gz', expiresIn: 600 })
    const response = await fetch(url)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-disposition')).toBe(`attachment; filename="Kontoauszug M_rz.csv.gz"; filename*=UTF-8''Kontoauszug%20M%C3%A4rz.csv.gz`)
    expect(Buffer.from(await response.arrayBuffer()).equals(expected)).toBe(true)
    // The link reads, and nothing else.
    expect((await fetch(url, { method: 'DELETE' })).status).toBe(403)
  }, 120_000)

  it("stores what the SDK's own uploadStream stores for the same export (a differential check)", async () => {
    const stages = () => ({ source: rows(300_000), format: csv(), gzip: true })
    await exportStream({ ...stages(), sink: azureBlobSink({ containerClient: container, blobName: 'ours.csv.gz', blockSize: 1024 * 1024 }) })
    const bytes = new PassThrough()
    const theirs = container
      .getBlockBlobClient('theirs.csv.gz')
      .uploadStream(bytes, 1024 * 1024, 4, { blobHTTPHeaders: { blobContentType: 'application/gzip' } })
    await Promise.all([exportStream({ ...stages(), sink: bytes }), theirs])
    expect((await blobBytes('ours.csv.gz')).equals(await blobBytes('theirs.csv.gz'))).toBe(true)
    const [a, b] = await Promise.all(['ours.csv.gz', 'theirs.csv.gz'].map((name) => container.getBlockBlobClient(name).getProperties()))
    expect([a!.contentType, a!.contentLength]).toEqual([b!.contentType, b!.contentLength])
    expect((await container.getBlockBlobClient('ours.csv.gz').getBlockList('committed')).committedBlocks!.length).toBe(
      (await container.getBlockBlobClient('theirs.csv.gz').getBlockList('committed')).committedBlocks!.length,
    )
  })

  it('a Put Block failing on every try fails the export: no blob, no staged block', async () => {
    azure.fault = ({ method, url }) => (method === 'PUT' && url.searchParams.get('comp') === 'block' && url.pathname.endsWith('/failing.csv') ? 500 : undefined)
    try {
      const error = await exportStream({
        source: rows(200_000),
        format: csv(),
        sink: azureBlobSink({ containerClient: container, blobName: 'failing.csv', blockSize: 1024 * 1024 }),
      }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ExportError)
      expect(error).toMatchObject({ code: 'ERR_SINK' })
    } finally {
      azure.fault = () => undefined
    }
    expect(await names('failing')).toEqual([])
    expect(await staged('failing.csv')).toEqual([])
  })

  it('an abort mid-export leaves no blob and no staged block, and an earlier blob at the name as it was', async () => {
    await exportStream({ source: rows(10), format: csv(), sink: azureBlobSink({ containerClient: container, blobName: 'kept.csv' }) })
    const before = await blobBytes('kept.csv')
    for (const name of ['aborted.csv', 'kept.csv']) {
      const controller = new AbortController()
      const error = await exportStream({
        source: rows(300_000),
        format: csv(),
        sink: azureBlobSink({ containerClient: container, blobName: name, blockSize: 256 * 1024 }),
        signal: controller.signal,
        onProgress: (p) => void (p.bytes > 2_000_000 && controller.abort()),
        progressIntervalMs: 1,
      }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    }
    expect(await names('aborted')).toEqual([])
    expect(await staged('aborted.csv')).toEqual([])
    expect((await blobBytes('kept.csv')).equals(before)).toBe(true)
  })

  it("a lost reply to Put Block List is recognised by the blob's committed blocks: the export has landed", async () => {
    azure.fault = ({ method, url }) => (method === 'PUT' && url.searchParams.get('comp') === 'blocklist' ? 'lose-reply' : undefined)
    let result
    try {
      result = await exportStream({
        source: rows(50_000),
        format: csv(),
        sink: azureBlobSink({ containerClient: container, blobName: 'lost.csv', blockSize: 256 * 1024 }),
      })
    } finally {
      azure.fault = () => undefined
    }
    expect((await blobBytes('lost.csv')).equals(await plainCsv(50_000, false))).toBe(true)
    expect(result.location!.etag).toBe((await container.getBlockBlobClient('lost.csv').getProperties()).etag)
  })

  it('a lost answer to the empty commit that discards the staged blocks: its own empty blob is recognised and deleted', async () => {
    let blocks = 0
    let lost = false
    azure.fault = ({ method, url }) => {
      if (!url.pathname.endsWith('/discard-lost.csv') || method !== 'PUT') return undefined
      // Three blocks land, then every try of the fourth fails; the empty commit's first answer is lost.
      if (url.searchParams.get('comp') === 'block') return ++blocks > 3 ? 500 : undefined
      if (url.searchParams.get('comp') !== 'blocklist' || lost) return undefined
      lost = true
      return 'lose-reply'
    }
    try {
      const error = await exportStream({
        source: rows(200_000),
        format: csv(),
        sink: azureBlobSink({ containerClient: container, blobName: 'discard-lost.csv', blockSize: 256 * 1024, concurrency: 1 }),
      }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_SINK' })
    } finally {
      azure.fault = () => undefined
    }
    expect(lost).toBe(true)
    expect(await names('discard-lost')).toEqual([])
    expect(await staged('discard-lost.csv')).toEqual([])
  })

  it('overwrite: false refuses a blob that exists before any byte is sent', async () => {
    await exportStream({ source: rows(5), format: csv(), sink: azureBlobSink({ containerClient: container, blobName: 'once.csv', overwrite: false }) })
    const before = azure.requests.length
    const error = await exportStream({
      source: rows(5),
      format: csv(),
      sink: azureBlobSink({ containerClient: container, blobName: 'once.csv', overwrite: false }),
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION' })
    expect(azure.requests.slice(before).map((r) => r.method)).toEqual(['HEAD'])
  })

  it("split output: parts (in the sink's tier) and a manifest beside the blob; a failed re-export leaves the earlier export as it was", async () => {
    const sink = () => azureBlobSink({ containerClient: container, blobName: 'split/orders.jsonl.gz', tier: 'Cool' })
    const first = await exportStream({ source: rows(25_000), format: jsonl(), gzip: true, split: { rows: 10_000 }, sink: sink() })
    expect(first.parts!.map((p) => p.rows)).toEqual([10_000, 10_000, 5_000])
    const manifest = JSON.parse((await blobBytes('split/orders.manifest.json')).toString()) as Manifest
    expect(manifest.rows).toBe(25_000)
    const text = (await Promise.all(manifest.parts.map(async (p) => gunzipSync(await blobBytes(`split/${p.name}`)).toString()))).join('')
    expect(text.split('\n').length - 1).toBe(25_000)
    const tierOf = async (name: string) => (await container.getBlockBlobClient(name).getProperties()).accessTier
    for (const part of manifest.parts) expect(await tierOf(`split/${part.name}`)).toBe('Cool')
    expect(await tierOf('split/orders.manifest.json')).not.toBe('Cool') // read before every later export
    const before = await names('split/')
    expect(before).toHaveLength(4)

    azure.fault = ({ method, url }) => (method === 'PUT' && url.pathname.includes('-00002') ? 500 : undefined)
    try {
      const error = await exportStream({ source: rows(25_000), format: jsonl(), gzip: true, split: { rows: 10_000 }, sink: sink() }).catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_SINK' })
    } finally {
      azure.fault = () => undefined
    }
    expect(await names('split/')).toEqual(before)
    expect(JSON.parse((await blobBytes('split/orders.manifest.json')).toString())).toEqual(manifest)
  })
})

describe('azureResumableUpload', () => {
  const attempt = async (checkpoint: AzureCheckpoint | undefined, saved: AzureCheckpoint[], stopAfter = Infinity) => {
    const controller = new AbortController()
    const upload = azureResumableUpload({
      containerClient: container,
      blobName: 'resumed.csv.gz',
      blockSize: 256 * 1024,
      checkpoint,
      onCheckpoint: async (c) => {
        // (A stop as a crash would leave it: blocks staged, the checkpoint saved, nothing committed.)
        if (saved.push(c) >= stopAfter) controller.abort()
      },
    })
    const landed = await upload.open()
    if (landed) return { location: landed, upload }
    const done = exportStream({
      source: rows(120_000, checkpoint?.lastKey as number | undefined),
      format: csv(),
      gzip: true,
      sink: upload,
      signal: controller.signal,
    })
    return { location: (await done).location, upload }
  }

  it('an export stopped after some blocks continues from its checkpoint into the rows of an export in one go', async () => {
    const saved: AzureCheckpoint[] = []
    expect(await attempt(undefined, saved, 4).catch((e: unknown) => e)).toMatchObject({ code: 'ERR_ABORTED' })
    expect(saved[0]!.blocks).toEqual([]) // saved before any block: a failure's clean-up knows the blob
    const checkpoint = saved.at(-1)!
    expect(checkpoint.blocks.length).toBeGreaterThanOrEqual(3)
    expect(await names('resumed')).toEqual(['resumed.csv.gz']) // (uncommitted: listed only with uncommitted blobs)
    expect(await container.getBlockBlobClient('resumed.csv.gz').exists()).toBe(false)

    const { location, upload } = await attempt(checkpoint, saved)
    expect(location).toMatchObject({ blob: 'resumed.csv.gz' })
    const stored = await blobBytes('resumed.csv.gz')
    expect(gunzipSync(stored).equals(await plainCsv(120_000, false))).toBe(true)
    expect(upload.checksum).toMatchObject({ value: await crc64(stored), bytes: stored.length })
    expect(await staged('resumed.csv.gz')).toEqual([])

    // The last checkpoint after a commit whose answer was lost: the next attempt finds it committed, exports nothing.
    const again = await attempt(saved.at(-1), [])
    expect(again.location).toMatchObject({ blob: 'resumed.csv.gz', etag: location!.etag })
  })

  it('killed after its last block, before the commit: the next attempt only commits, with the content type the export had', async () => {
    const saved: AzureCheckpoint[] = []
    const upload = azureResumableUpload({
      containerClient: container,
      blobName: 'ended.csv.gz',
      blockSize: 256 * 1024,
      onCheckpoint: async (c) => {
        saved.push(c)
        if (c.ended) throw new Error('killed before the commit')
      },
    })
    await upload.open()
    expect(await exportStream({ source: rows(50_000), format: csv(), gzip: true, sink: upload }).catch((e: unknown) => e)).toBeInstanceOf(Error)
    expect(await container.getBlockBlobClient('ended.csv.gz').exists()).toBe(false)
    const again = azureResumableUpload({ containerClient: container, blobName: 'ended.csv.gz', checkpoint: saved.at(-1), onCheckpoint: async () => {} })
    expect(await again.open()).toMatchObject({ blob: 'ended.csv.gz' })
    const blob = container.getBlockBlobClient('ended.csv.gz')
    expect((await blob.getProperties()).contentType).toBe('application/gzip')
    expect(gunzipSync(await blob.downloadToBuffer()).equals(await plainCsv(50_000, false))).toBe(true)
  })

  it('refuses unknown options and a checkpoint of another blob', () => {
    const onCheckpoint = async () => {}
    expect(() => azureResumableUpload({ containerClient: container, blobName: 'x', onCheckpoint, blocksize: 1 } as never)).toThrow(/Unknown option `blocksize`/)
    const checkpoint = { container: 'exports', blob: 'other', run: 'r', blocks: [], rows: 0, bytes: 0 }
    expect(() => azureResumableUpload({ containerClient: container, blobName: 'x', onCheckpoint, checkpoint })).toThrow(/checkpoint/)
    expect(() => azureBlobSink({ containerClient: container, blobName: 'x', blockSize: 0 })).toThrow(/blockSize/)
  })
})

describe('azureBlobSink({ blobClient })', () => {
  const sasClient = async (name: string) =>
    new BlockBlobClient(
      await container.getBlockBlobClient(name).generateSasUrl({ permissions: BlobSASPermissions.parse('racwd'), expiresOn: new Date(Date.now() + 3_600_000) }),
    )

  it("a BlockBlobClient made from a SAS URL writes its blob (the result's URL without the SAS); split output is refused before any blob", async () => {
    const blobClient = await sasClient('by-sas/orders.csv.gz')
    const result = await exportStream({ source: rows(50_000), format: csv(), gzip: true, sink: azureBlobSink({ blobClient, blockSize: 256 * 1024 }) })
    expect(result.location).toEqual({ container: 'exports', blob: 'by-sas/orders.csv.gz', url: blobClient.url.split('?')[0], etag: expect.any(String) })
    expect(gunzipSync(await blobBytes('by-sas/orders.csv.gz')).equals(await plainCsv(50_000, false))).toBe(true)
    expect(await staged('by-sas/orders.csv.gz')).toEqual([])

    const split = azureBlobSink({ blobClient: await sasClient('by-sas/split.csv') })
    const error = await exportStream({ source: rows(30_000), format: csv(), split: { rows: 10_000 }, sink: split }).catch((e: unknown) => e)
    expect(error).toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringMatching(/^A blobClient writes its one blob \(by-sas\/split\.csv\).*give containerClient/),
    })
    expect(await names('by-sas/')).toEqual(['by-sas/orders.csv.gz'])
    expect(() => azureBlobSink({ blobClient, blobName: 'x' } as never)).toThrow(/`blobName` to be unset with a blobClient/)
    // A SAS that could not read back or delete what the sink stages (or set its tags): refused before any request.
    const weak = new BlockBlobClient(
      await container
        .getBlockBlobClient('by-sas/weak.csv')
        .generateSasUrl({ permissions: BlobSASPermissions.parse('cw'), expiresOn: new Date(Date.now() + 3_600_000) }),
    )
    expect(() => azureBlobSink({ blobClient: weak })).toThrow(
      /`blobClient` to be a client whose SAS may read, write and delete the blob \(rwd\); it lacks rd, got `"sp=cw"`/,
    )
    expect(() => azureBlobSink({ blobClient, tags: { a: 'b' } })).toThrow(/\(rwdt with tags\); it lacks t/)
    await expect(azureDownloadUrl(container, { blobName: 'by-sas/orders.csv.gz', expiresIn: 1e12 })).rejects.toThrow(
      /`expiresIn` to be seconds that end before the year 10000/,
    )
    for (const name of ['../elsewhere/x.csv', 'a/./b.csv', 'a\\b.csv', '..'])
      expect(() => azureBlobSink({ containerClient: container, blobName: name })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
    for (const bad of [{}, null, { getBlockBlobClient: () => blobClient, name: 'x', containerName: 'exports' }])
      expect(() => azureBlobSink({ blobClient: bad as never })).toThrow(/`blobClient` to be a BlobClient or BlockBlobClient/)
  })

  it('azureResumableUpload with a blobClient: stopped after some blocks, continued from its checkpoint into one blob', async () => {
    const saved: AzureCheckpoint[] = []
    const attempt = async (checkpoint?: AzureCheckpoint, stopAfter = Infinity) => {
      const controller = new AbortController()
      const upload = azureResumableUpload({
        blobClient: await sasClient('by-sas/resumed.csv'),
        blockSize: 256 * 1024,
        checkpoint,
        onCheckpoint: async (c) => void (saved.push(c) >= stopAfter && controller.abort()),
      })
      await upload.open()
      const source = rows(60_000, checkpoint?.lastKey as number | undefined)
      return exportStream({ source, format: csv(), gzip: false, sink: upload, signal: controller.signal })
    }
    expect(await attempt(undefined, 3).catch((e: unknown) => e)).toMatchObject({ code: 'ERR_ABORTED' })
    const result = await attempt(saved.at(-1))
    expect(result.location).toMatchObject({ container: 'exports', blob: 'by-sas/resumed.csv' })
    expect((await blobBytes('by-sas/resumed.csv')).equals(await plainCsv(60_000, false))).toBe(true)
  })
})
