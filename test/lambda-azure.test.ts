// The Lambda handler exporting to Azure Blob Storage (Azurite): a job paused before each
// invocation's deadline continues its staged blocks in the next, into one blob.
import pg from 'pg'
import type { ContainerClient } from '@azure/storage-blob'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLambdaExportHandler, postgresContinuationStore } from '../src/lambda.js'
import { csv, type AzureCheckpoint } from '../src/index.js'
import { startAzure, type TestAzure } from './fixtures/azurite.js'
import { invokeInProcess } from './fixtures/lambda-runtime.js'
import { databaseUrl } from './fixtures/postgres.js'
import { expectSameBytes, exportedBytes, keyedRows } from './helpers.js'

let azure: TestAzure
let container: ContainerClient
let pool: pg.Pool
beforeAll(async () => {
  azure = await startAzure()
  container = await azure.container('lambda')
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
}, 60_000)
afterAll(async () => {
  await azure?.close()
  await pool?.end()
})

const ROWS = 60_000
const row = (id: number) => ({ id, customer: `c${id % 97}`, amount: `${id % 1000}.50` })
const rows = (after?: number) => keyedRows(ROWS, row, after, 500)

describe('createLambdaExportHandler with an Azure container', () => {
  it('an export paused at each deadline continues its staged blocks in the next invocation, into one blob', async () => {
    const jobId = `lambda-azure-${Date.now()}`
    const queue: string[] = [JSON.stringify({ jobId })]
    const checkpoints: AzureCheckpoint[] = []
    const handler = createLambdaExportHandler({
      container,
      store: postgresContinuationStore({ pool }),
      send: async (body) => void queue.push(body),
      maxReceiveCount: 1,
      marginMs: 1000,
      resolve: (job, { after }) => {
        const checkpoint = (job.data as { exportCheckpoint?: AzureCheckpoint }).exportCheckpoint
        if (checkpoint) checkpoints.push(checkpoint)
        return { source: rows(after as number | undefined), format: csv(), maxRowsPerSecond: 25_000 } // about 2.4 s in all
      },
    })
    const responses = await invokeInProcess(handler, queue, 1500)
    expect(responses.flatMap((response) => response.batchItemFailures)).toEqual([])
    expect(responses.length).toBeGreaterThanOrEqual(3)
    expect(checkpoints.at(-1)!.blocks.length).toBeGreaterThanOrEqual(2) // continued, not started over
    const blob = await container.getBlockBlobClient(`exports/${jobId}.csv`).downloadToBuffer()
    expectSameBytes(blob, await exportedBytes({ source: rows(), format: csv() }))
    expect((await container.getBlockBlobClient(`exports/${jobId}.csv`).getBlockList('uncommitted')).uncommittedBlocks ?? []).toEqual([])
  }, 60_000)
})
