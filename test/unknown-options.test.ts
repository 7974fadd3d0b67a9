// A misspelt option is refused, naming it and the nearest known one, before any output: in plain
// JavaScript nothing else would tell `gzp: true` from a gzipped export.
import { describe, expect, it } from 'vitest'
import { S3Client } from '@aws-sdk/client-s3'
import pg from 'pg'
import {
  csv,
  csvSource,
  exportKey,
  exportStream,
  ExportError,
  fileSink,
  gzip,
  jsonArray,
  jsonl,
  jsonlSource,
  mongoIncrementalSource,
  mongoSource,
  planShards,
  parquet,
  postgresCopySource,
  postgresKeysetSource,
  postgresSource,
  presignDownload,
  progress,
  s3Sink,
  xlsx,
} from '../src/index.js'
import { createExportProcessor, createShardedExportProcessor, notifyWebhook, verifyWebhook } from '../src/bullmq.js'

async function refusal(run: () => unknown): Promise<ExportError> {
  const error = await (async () => run())().then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ExportError)
  expect((error as ExportError).code).toBe('ERR_INVALID_OPTION')
  return error as ExportError
}

describe('unknown option keys', () => {
  it('exportStream: `gzp` is refused with "did you mean `gzip`?", before the source is read', async () => {
    let read = false
    const rows = function* () {
      read = true
      yield { a: 1 }
    }
    const { PassThrough } = await import('node:stream')
    const error = await refusal(() => exportStream({ source: rows(), format: csv(), sink: new PassThrough(), gzp: true } as never))
    expect(error.message).toBe('Unknown option `gzp` in `options` (did you mean `gzip`?)')
    expect(read).toBe(false)
    const far = await refusal(() => exportStream({ source: [], format: csv(), sink: new PassThrough(), brotli: true } as never))
    expect(far.message).toContain('Unknown option `brotli` in `options`; the options are `source`, `transform`')
  })

  const refused = (run: () => unknown, key: string, nearest: string) => {
    let error: unknown
    try {
      run()
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ExportError)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION' })
    expect((error as Error).message).toContain(`Unknown option \`${key}\` in \`options\` (did you mean \`${nearest}\`?)`)
  }

  it('formats: csv, jsonl, parquet, xlsx', () => {
    expect(() => csv({ seperator: ';' } as never)).toThrow('Unknown option `seperator` in `options`; the options are `columns`, `header`, `delimiter`')
    refused(() => csv({ delimter: ';' } as never), 'delimter', 'delimiter')
    refused(() => jsonl({ binaryy: 'base64' } as never), 'binaryy', 'binary')
    refused(() => jsonArray({ binay: 'hex' } as never), 'binay', 'binary')
    refused(() => parquet({ rowGroupsize: 10 } as never), 'rowGroupsize', 'rowGroupSize')
    refused(() => xlsx({ sheetname: 'x' } as never), 'sheetname', 'sheetName')
  })

  it('sinks and stages: fileSink, s3Sink, gzip, progress, exportKey', () => {
    refused(() => fileSink({ pth: 'x.csv' } as never), 'pth', 'path')
    const client = new S3Client({ region: 'us-east-1' })
    refused(() => s3Sink({ client, bucket: 'b', key: 'k', partsize: 5 * 2 ** 20 } as never), 'partsize', 'partSize')
    refused(() => gzip({ levl: 9 } as never), 'levl', 'level')
    refused(() => progress({ interval: 5 } as never), 'interval', 'intervalMs')
    refused(() => exportKey({ jobid: '1', format: csv() } as never), 'jobid', 'jobId')
  })

  it('presignDownload: a misspelt key is refused before anything is signed', async () => {
    const client = new S3Client({ region: 'us-east-1' })
    const error = await refusal(() => presignDownload(client, { bucket: 'b', key: 'k', expiresin: 60 } as never))
    expect(error.message).toBe('Unknown option `expiresin` in `options` (did you mean `expiresIn`?)')
  })

  it('sources: Postgres, CSV and JSON Lines files', () => {
    const pool = new pg.Pool()
    refused(() => postgresSource({ pool, text: 'select 1', batchsize: 10 } as never), 'batchsize', 'batchSize')
    refused(() => postgresKeysetSource({ pool, table: 't', keys: 'id' } as never), 'keys', 'key')
    refused(() => postgresCopySource({ pool, text: 'select 1', headers: true } as never), 'headers', 'header')
    refused(() => csvSource({ path: 'x.csv', delimeter: ';' } as never), 'delimeter', 'delimiter')
    refused(() => jsonlSource({ paths: 'x.jsonl' } as never), 'paths', 'path')
    void pool.end()
  })

  it('split, planShards and the MongoDB incremental source', async () => {
    const { PassThrough } = await import('node:stream')
    const split = await exportStream({ source: [], format: csv(), sink: new PassThrough(), split: { row: 10 } } as never).catch((e: unknown) => e)
    expect(split).toMatchObject({ code: 'ERR_INVALID_OPTION', message: 'Unknown option `row` in `split` (did you mean `rows`?)' })
    const pool = new pg.Pool()
    await expect(planShards({ pool, table: 't', shard: 4 } as never)).rejects.toMatchObject({ message: expect.stringContaining('(did you mean `shards`?)') })
    void pool.end()
    refused(() => mongoIncrementalSource({ collection: {}, field: 'updatedAt', lookback: 1000 } as never), 'lookback', 'lookbackMs')
    refused(() => mongoSource({ collection: {}, batchsize: 10 } as never), 'batchsize', 'batchSize')
  })

  it('jobs: createExportProcessor, createShardedExportProcessor, notifyWebhook, verifyWebhook', () => {
    const s3 = new S3Client({ region: 'us-east-1' })
    refused(
      () => createExportProcessor({ s3, bucket: 'b', resolve: () => ({ source: [], format: csv() }), urlExpiresin: 60 } as never),
      'urlExpiresin',
      'urlExpiresIn',
    )
    refused(
      () => createShardedExportProcessor({ s3, bucket: 'b', queue: {}, plan: () => [], resolve: () => ({}), partsize: 5 * 2 ** 20 } as never),
      'partsize',
      'partSize',
    )
    refused(() => notifyWebhook({ url: 'https://example.com', secret: 's', attemps: 3 } as never), 'attemps', 'attempts')
    // A misspelt tolerance would otherwise leave the default 300 s window in place.
    refused(
      () => verifyWebhook({ secret: 's', body: '{}', signature: 'sha256=00', timestamp: '1', toleranceSecond: 30 } as never),
      'toleranceSecond',
      'toleranceSeconds',
    )
  })
})
