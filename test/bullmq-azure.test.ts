// Export jobs to Azure Blob Storage: the worker recipe (examples/bullmq-worker.mjs with
// AZURE_STORAGE_CONNECTION_STRING) in its own process on real Redis and Postgres, writing to
// Azurite through the fault proxy; SIGKILLed mid-export and at the commit point.
import { gunzipSync } from 'node:zlib'
import type { ContainerClient } from '@azure/storage-blob'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AzureCheckpoint } from '../src/index.js'
import { startAzure, type TestAzure } from './fixtures/azurite.js'
import { createStatements, databaseUrl, tableCsv } from './fixtures/postgres.js'
import { recipeQueue } from './fixtures/recipe-worker.js'
import type { TestS3 } from './fixtures/s3-server.js'
import { expectSameBytes } from './helpers.js'

const redisUp = process.env.REDIS_AVAILABLE === '1'
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const TABLE = 'se_azure_statements'
const ROWS = 120_000 // ~15 MB of CSV: three 5 MiB blocks

let azure: TestAzure
let container: ContainerClient
let serialExport: Buffer
beforeAll(async () => {
  azure = await startAzure()
  container = await azure.container('jobs')
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
  await createStatements(pool, TABLE, ROWS)
  await pool.end()
  serialExport = await tableCsv(TABLE)
}, 120_000)
afterAll(() => azure?.close())

// (The recipe also makes an S3 client: this one is never used.)
const noS3 = { endpoint: 'http://127.0.0.1:9', bucket: 'unused' } as TestS3

async function exportQueue(env: Record<string, string> = {}, containerName = 'jobs') {
  const { queue, events, worker } = await recipeQueue({
    prefix: 'se-azure',
    redisUrl,
    s3: noS3,
    env: { AZURE_STORAGE_CONNECTION_STRING: azure.connectionString, AZURE_CONTAINER: containerName, ...env },
  })
  const add = (data: object) => queue.add('export', { table: TABLE, format: 'csv', ...data }, { attempts: 3, backoff: { type: 'fixed', delay: 100 } })
  const checkpoint = async (id: string) => (await queue.getJob(id))?.data.exportCheckpoint as AzureCheckpoint | undefined
  return { queue, events, worker, add, checkpoint }
}

const staged = async (blob: string, where = container) =>
  (
    await where
      .getBlockBlobClient(blob)
      .getBlockList('uncommitted')
      .catch(() => ({ uncommittedBlocks: [] }))
  ).uncommittedBlocks ?? []

async function expectWholeExport(blob: string, gzip: boolean) {
  const body = await container.getBlockBlobClient(blob).downloadToBuffer()
  expectSameBytes(gzip ? gunzipSync(body) : body, serialExport) // every row in order, none twice, none missing
  expect(await staged(blob)).toEqual([])
}

describe.skipIf(!redisUp)(`export jobs to Azure Blob Storage${redisUp ? '' : ' (skipped: Redis is not reachable at REDIS_URL)'}`, () => {
  it('killed twice mid-export: a third worker continues from the staged blocks, and the SAS link downloads the blob', async () => {
    const { events, worker, add, checkpoint } = await exportQueue()
    const job = await add({ gzip: false })
    const blob = `exports/${job.id}.csv`
    for (const blocks of [1, 2]) {
      const child = worker()
      await expect.poll(async () => (await checkpoint(job.id!))?.blocks.length ?? 0, { timeout: 60_000, interval: 10 }).toBeGreaterThanOrEqual(blocks)
      child.kill('SIGKILL')
      await new Promise((resolve) => child.once('exit', resolve))
    }
    const before = (await checkpoint(job.id!))!
    worker()
    const result = await job.waitUntilFinished(events, 60_000)
    expect(result).toMatchObject({ rows: ROWS, resumed: true, location: { bucket: 'jobs', key: blob } })
    await expectWholeExport(blob, false)
    const committed = (await container.getBlockBlobClient(blob).getBlockList('committed')).committedBlocks!.map((b) => b.name)
    expect(committed.slice(0, before.blocks.length)).toEqual(before.blocks.map((b) => b.id)) // the killed workers' blocks, kept
    const download = await fetch(result.url)
    expect(Buffer.from(await download.arrayBuffer()).equals(await container.getBlockBlobClient(blob).downloadToBuffer())).toBe(true)
  }, 120_000)

  it('killed as Put Block List lands (its answer lost): the retry finds the blob committed with its blocks and succeeds', async () => {
    const { events, worker, add } = await exportQueue()
    const job = await add({ gzip: true })
    const blob = `exports/${job.id}.csv.gz`
    const first = worker()
    azure.fault = ({ method, url }) => {
      if (method !== 'PUT' || url.searchParams.get('comp') !== 'blocklist' || !url.pathname.endsWith(blob)) return undefined
      azure.fault = () => undefined
      return () => first.kill('SIGKILL') // before the worker can hear Azurite's answer
    }
    await new Promise((resolve) => first.once('exit', resolve))
    expect(await container.getBlockBlobClient(blob).exists()).toBe(true)
    worker()
    const result = await job.waitUntilFinished(events, 60_000)
    expect(result).toMatchObject({ rows: ROWS, resumed: true })
    await expectWholeExport(blob, true)
  }, 90_000)

  it('a partitioned job writes a blob per currency and a manifest, each with a SAS link', async () => {
    const { events, worker, add } = await exportQueue()
    const job = await add({ gzip: true, partitionBy: 'currency' })
    worker()
    const result = await job.waitUntilFinished(events, 90_000)
    expect(result.rows).toBe(ROWS)
    expect(result.location).toMatchObject({ bucket: 'jobs', key: `exports/${job.id}/partitions.manifest.json` })
    const manifest = JSON.parse((await (await fetch(result.url)).text()) as string) as { rows: number; parts: unknown[] }
    expect(manifest.rows).toBe(ROWS)
    for (const partition of result.partitions)
      for (const [i, url] of partition.urls.entries()) {
        const part = Buffer.from(await (await fetch(url)).arrayBuffer())
        expect(part.equals(await container.getBlockBlobClient(partition.locations[i]!.key).downloadToBuffer())).toBe(true)
      }
    const currencies = result.partitions.map((p: { values: { currency: string } }) => p.values.currency)
    expect(currencies.length).toBeGreaterThan(1)
    expect(currencies).toEqual([...currencies].sort())
  }, 120_000)

  it('a job failed for stalling (no processor ran) has its staged blocks discarded by the recipe', async () => {
    // (Its own container: where a blob exists at the name, its staged blocks wait for its next commit.)
    const stalled = await azure.container('stalled')
    const { queue, worker, add, checkpoint } = await exportQueue({ MAX_STALLED_COUNT: '0' }, 'stalled')
    const job = await add({ gzip: false })
    const blob = `exports/${job.id}.csv`
    const first = worker()
    await expect.poll(async () => (await checkpoint(job.id!))?.blocks.length ?? 0, { timeout: 60_000, interval: 10 }).toBeGreaterThanOrEqual(1)
    first.kill('SIGKILL')
    await new Promise((resolve) => first.once('exit', resolve))
    expect((await staged(blob, stalled)).length).toBeGreaterThanOrEqual(1)
    let deletes = 0 // the discard's delete of its empty blob fails twice (503s the SDK retries)
    azure.fault = ({ method, url }) => (method === 'DELETE' && url.pathname.endsWith(blob) && deletes++ < 2 ? 503 : undefined)
    worker() // its stalled check fails the job; the recipe's failed handler cleans up
    await expect.poll(async () => (await queue.getJob(job.id!))?.isFailed(), { timeout: 30_000, interval: 100 }).toBe(true)
    // (The discard commits an empty block list, which drops the staged blocks, then deletes that empty
    // blob: between the two, nothing is staged and a blob exists, so both are polled together.)
    const left = async () => ({ staged: (await staged(blob, stalled)).length, blob: await stalled.getBlockBlobClient(blob).exists() })
    await expect.poll(left, { timeout: 30_000, interval: 100 }).toEqual({ staged: 0, blob: false })
    azure.fault = () => undefined
    expect(deletes).toBe(3)
  }, 90_000)
})
