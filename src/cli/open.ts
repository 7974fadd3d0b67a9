// The parts of the CLI's export, opened from its options: the source, the format, the sink (a
// file, S3 or standard output) and the watermark store of --since-state.
import { lstat, stat } from 'node:fs/promises'
import { Writable } from 'node:stream'
import pg from 'pg'
import {
  csv,
  csvSource,
  ExportError,
  fileSink,
  fileWatermarkStore,
  jsonArray,
  jsonl,
  jsonlSource,
  mongoShardedSource,
  mongoSource,
  parquet,
  postgresCopySource,
  postgresShardedSource,
  postgresSource,
  postgresWatermarkStore,
  s3Sink,
  azureBlobSink,
  gcsClient,
  xlsx,
  type AzureContainerLike,
  type S3ClientLike,
  type WatermarkStore,
  mysqlSource,
} from '../index.js'
import { loadOptional } from '../core/optional.js'
import { checkCondition } from '../sinks/s3/client.js'
import { AZURE_BLOB_URL, formatOfName, UsageError, type Options } from './args.js'
import { blockBlob } from '../sinks/azure/client.js'
import { canSign } from '../sinks/azure/sas.js'
import { redact } from './output.js'

export function makeFormat(options: Options) {
  switch (options.format) {
    case 'csv':
      return csv({
        header: options.header,
        ...(options.excel ? { excel: true } : {}),
        ...(options.bom ? { bom: true } : {}),
        ...(options.delimiter !== undefined ? { delimiter: options.delimiter } : {}),
        ...(options.null !== undefined ? { nullValue: options.null } : {}),
        ...(options.columns ? { columns: options.columns } : {}),
      })
    case 'jsonl':
      return jsonl()
    case 'json':
      return jsonArray()
    case 'parquet':
      return parquet()
    case 'xlsx':
      return xlsx({ header: options.header, ...(options.columns ? { columns: options.columns } : {}) })
  }
}

/** The watermark store of --since-state: a JSON file, or `postgres[:table]` in the source database. */
export function openStore(options: Options, cleanups: Array<() => Promise<unknown>>): WatermarkStore {
  const state = options.incremental!.state
  const table = /^postgres(?::(.+))?$/.exec(state)
  if (!table) return fileWatermarkStore({ path: state })
  const pool = new pg.Pool({ connectionString: options.from, max: 1 })
  cleanups.push(() => pool.end())
  return postgresWatermarkStore({ pool, ...(table[1] ? { table: table[1] } : {}) })
}

export async function openSource(options: Options, cleanups: Array<() => Promise<unknown>>) {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(options.from)?.[1]?.toLowerCase()
  const count = options.count === 'none' ? undefined : options.count
  if (scheme === 'mysql' || scheme === 'mariadb') {
    if (!options.query || options.collection) throw new UsageError('a MySQL source takes --query (and no --collection)')
    if (options.copy || options.shards) throw new UsageError(`${options.copy ? '--copy' : '--shards'} is not offered for MySQL (docs/mysql.md)`)
    const mysql = loadOptional<typeof import('mysql2')>('mysql2', 'mysql2')
    const pool = mysql.createPool({ uri: `mysql${options.from.slice(scheme.length)}`, connectionLimit: 2 })
    cleanups.push(() => pool.promise().end())
    return mysqlSource({ pool, query: options.query, ...(count ? { count } : {}) })
  }
  if (options.shards?.table) {
    const { count: shards, table, key } = options.shards
    return postgresShardedSource({ connectionString: options.from, table, key, shards, select: options.query, count, ...options.guards })
  }
  if (scheme === 'postgres' || scheme === 'postgresql') {
    if (!options.query || options.collection) throw new UsageError('a Postgres source takes --query (and no --collection)')
    if (options.copy) return postgresCopySource({ connectionString: options.from, text: options.query, header: options.header, ...options.guards })
    return postgresSource({ connectionString: options.from, text: options.query, count, ...options.guards })
  }
  if (scheme === 'mongodb' || scheme === 'mongodb+srv') {
    if (!options.collection || options.query) throw new UsageError('a MongoDB source takes --collection (and no --query)')
    if (options.copy) throw new UsageError('--copy is for Postgres')
    const { MongoClient, BSON } = loadOptional<typeof import('mongodb')>('mongodb', 'mongodb')
    let filter: Record<string, unknown>
    try {
      filter = options.filter ? (BSON.EJSON.parse(options.filter) as Record<string, unknown>) : {}
    } catch (error) {
      throw new UsageError(`--filter: not valid (extended) JSON: ${(error as Error).message}`)
    }
    const client = new MongoClient(options.from, { serverSelectionTimeoutMS: 10_000 })
    cleanups.push(() => client.close())
    try {
      await client.connect()
    } catch (error) {
      throw new ExportError('ERR_SOURCE', 'source', `Cannot connect to MongoDB: ${(error as Error).message}`, { cause: error })
    }
    if (options.shards) {
      const clientOptions = { serverSelectionTimeoutMS: 10_000 }
      return mongoShardedSource({ url: options.from, clientOptions, collection: options.collection, filter, shards: options.shards.count, count })
    }
    const collection = client.db().collection(options.collection)
    return mongoSource({ collection: collection, filter, count })
  }
  if (scheme === undefined) {
    // A file of rows.
    if (options.query || options.collection || options.copy) throw new UsageError('a file source takes no --query, --collection or --copy')
    const { format } = formatOfName(options.from)
    if (format === 'csv') return csvSource({ path: options.from, types: options.types, empty: options.emptyNull ? 'null' : 'string' })
    if (format === 'jsonl') return jsonlSource({ path: options.from })
    throw new UsageError(
      `--from: expected a postgres://, mysql:// or mongodb:// URL, or a .csv / .jsonl / .ndjson file (optionally .gz), got ${JSON.stringify(options.from)}`,
    )
  }
  throw new UsageError(
    `--from: expected a postgres://, mysql:// (mariadb://) or mongodb:// URL, or a .csv / .jsonl file, got ${JSON.stringify(redact(options.from))}`,
  )
}

/**
 * Standard output as a sink, with its backpressure; it finishes without closing it. A reader that
 * goes away (`| head`) is no failure: `readerGone` is called once (the CLI stops the export
 * quietly, as psql does) and nothing more is written.
 */
function stdoutSink(stdout: NodeJS.WritableStream, readerGone: () => void): Writable {
  let gone = false
  let failure: Error | undefined
  const onError = (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') failure ??= error
    else if (!gone) {
      gone = true
      readerGone()
    }
  }
  // Left listening after the export: an EPIPE of the last writes can come after it has finished.
  stdout.on('error', onError)
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (failure || gone || stdout.write(chunk)) return callback(failure)
      const settle = () => {
        stdout.off('drain', settle)
        stdout.off('error', settle)
        callback(failure) // (the error listener above has run first: a reader gone is no failure)
      }
      stdout.once('drain', settle)
      stdout.once('error', settle)
    },
    final(callback) {
      callback(failure)
    },
  })
}

/** The sink of --to, and what --presign signs with: an S3 (or GCS) client and bucket, or an Azure container. */
export async function openSink(options: Options, stdout: NodeJS.WritableStream, readerGone: () => void = () => {}): Promise<OpenedSink> {
  if (options.to === '-') return { sink: stdoutSink(stdout, readerGone) }
  const azure = azureTarget(options.to)
  if (azure) {
    const { containerClient, blobName } = azure
    const where = `az://${containerClient.containerName}/${blobName}` // (never the SAS)
    // (Checked before the query runs: a link is signed with the account's key.)
    if (options.presign && !canSign(containerClient))
      throw new UsageError('--presign signs with the account key: give az:// and a $AZURE_STORAGE_CONNECTION_STRING with an AccountKey')
    if (options.noClobber) {
      const exists = await blockBlob(containerClient, blobName)
        .exists()
        .catch((error: Error) => {
          throw new ExportError('ERR_SINK', 'sink', `Cannot tell whether ${where} exists: ${error.message}`, { cause: error })
        })
      if (exists) throw new ExportError('ERR_PRECONDITION', 'sink', `Refused before the query ran: a blob exists at ${where} (overwrite: false)`)
    }
    return { sink: azureBlobSink({ containerClient, blobName, checksum: options.checksum, overwrite: !options.noClobber }), azure }
  }
  const gcs = /^gs:\/\/([^/]+)\/(.+)$/.exec(options.to)
  if (gcs) {
    const client = gcsFromEnv(options.endpoint)
    return { sink: s3Sink({ client, bucket: gcs[1]!, key: gcs[2]! }), client, bucket: gcs[1]!, key: gcs[2]! }
  }
  const s3url = /^s3:\/\/([^/]+)\/(.+)$/.exec(options.to)
  if (!s3url) {
    // Checked before the query runs: a directory would only fail at the rename, after every row.
    const there = await stat(options.to).catch(() => undefined)
    if (there?.isDirectory()) throw new UsageError(`--to: ${JSON.stringify(options.to)} is a directory; give a file name`)
    // --no-clobber: refused before the query runs too (the sink checks again at its first byte and its commit).
    if (options.noClobber && (there ?? (await lstat(options.to).catch(() => undefined))))
      throw new ExportError('ERR_PRECONDITION', 'sink', `Refused before the query ran: a file exists at ${options.to} (overwrite: false)`)
    return { sink: fileSink({ path: options.to, checksum: options.checksum, overwrite: !options.noClobber }) }
  }
  const client = s3Client(options.endpoint)
  const bucket = s3url[1]!
  const key = s3url[2]!
  if (options.noClobber) {
    const refusal = await checkCondition({ client, bucket, key }, { IfNoneMatch: '*' }).catch((error: Error) => {
      throw new ExportError('ERR_SINK', 'sink', `Cannot tell whether s3://${bucket}/${key} exists: ${error.message}`, { cause: error })
    })
    if (refusal) throw new ExportError('ERR_PRECONDITION', 'sink', `Refused before the query ran: ${refusal}`)
  }
  return { sink: s3Sink({ client, bucket, key, checksum: options.checksum, overwrite: !options.noClobber }), client, bucket, key }
}

export type OpenedSink = {
  sink: Writable
  client?: S3ClientLike
  bucket?: string
  key?: string
  azure?: { containerClient: AzureContainerLike; blobName: string }
}

const requiredEnv = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new UsageError(`${name.startsWith('GCS') ? 'gs://' : 'az://'} needs $${name}`)
  return value
}

/** A GCS client (its XML API) with the HMAC key in $GCS_HMAC_ACCESS_KEY_ID and $GCS_HMAC_SECRET, at `endpoint` when given. */
export const gcsFromEnv = (endpoint: string | undefined) =>
  gcsClient({ accessKeyId: requiredEnv('GCS_HMAC_ACCESS_KEY_ID'), secretAccessKey: requiredEnv('GCS_HMAC_SECRET'), endpoint })

/**
 * The container and blob of an Azure --to: az://container/blob with $AZURE_STORAGE_CONNECTION_STRING,
 * or https://<account>.blob.core.windows.net/container/blob?<SAS> (a SAS that may write; it cannot sign links).
 */
export function azureTarget(to: string): OpenedSink['azure'] {
  const az = /^az:\/\/([^/]+)\/(.+)$/.exec(to)
  const https = AZURE_BLOB_URL.exec(to)
  if (!az && !https) return undefined
  const { BlobServiceClient, ContainerClient } = loadOptional<typeof import('@azure/storage-blob')>('@azure/storage-blob', '@azure/storage-blob')
  if (az) {
    const connection = requiredEnv('AZURE_STORAGE_CONNECTION_STRING')
    const service = bad('$AZURE_STORAGE_CONNECTION_STRING', () => BlobServiceClient.fromConnectionString(connection))
    return { containerClient: service.getContainerClient(az[1]!), blobName: az[2]! }
  }
  const [, origin, container, blob, sas = ''] = https!
  return { containerClient: new ContainerClient(`${origin}/${container}${sas}`), blobName: bad('the blob URL', () => decodeURIComponent(blob!)) }
}

/** What `make` returns, or a usage error (exit 2) naming `what` where it throws: bad input, not a failure. */
function bad<T>(what: string, make: () => T): T {
  try {
    return make()
  } catch (error) {
    throw new UsageError(`${what}: ${(error as Error).message}`)
  }
}

/** An S3Client from the environment (AWS_REGION, the default credential chain), or for an S3-compatible store at `endpoint`. */
export function s3Client(endpoint: string | undefined): import('@aws-sdk/client-s3').S3Client {
  const { S3Client } = loadOptional<typeof import('@aws-sdk/client-s3')>('@aws-sdk/client-s3', '@aws-sdk/client-s3')
  return new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(endpoint ? { endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' } : {}),
  })
}
