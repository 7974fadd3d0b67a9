// A worker thread of in-process shards (readable.ts): reads one key range on its own
// connection, inside the coordinator's snapshot, and sends its output in chunks, each once the one
// `window` chunks before it was acknowledged. Built as its own entry (dist/shard-worker.js, .cjs).
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { serialize } from 'node:v8'
import { parentPort, workerData } from 'node:worker_threads'
import pg from 'pg'
import { toExportError } from '../core/errors.js'
import { csv } from '../formats/csv.js'
import { jsonl } from '../formats/jsonl.js'
import { loadOptional } from '../core/optional.js'
import { isRowBatch, type Formatter, type Row, type SourceExtras } from '../core/types.js'
import { postgresSource } from '../sources/postgres/query.js'
import type { ShardMessage, ShardSource, ShardWork } from './readable.js'

// Rows per chunk in row mode: a Postgres page; bytes per chunk of raw documents.
const CHUNK_ROWS = 1000
const CHUNK_BYTES = 64 * 1024

const work = workerData as ShardWork
const port = parentPort!
let credit = work.window
let waiting: (() => void) | undefined
// Set once the export no longer wants this shard: its source is destroyed, its connection ended.
let stop: (() => void) | undefined
let stopped = false
port.on('message', (message: { type: 'ack'; count: number } | { type: 'stop' }) => {
  if (message.type === 'stop') {
    stopped = true
    stop?.()
    return
  }
  credit += message.count
  const wake = waiting
  waiting = undefined
  wake?.()
})

/** Sends a chunk (a copy the other thread owns) once a window's chunk has been acknowledged. */
async function send(rows: number, bytes: Uint8Array, source: SourceExtras): Promise<void> {
  while (credit <= 0) await new Promise<void>((resolve) => (waiting = resolve))
  credit--
  const payload = new Uint8Array(bytes) // a driver's or the pool's buffer is never given away
  const message: ShardMessage = { type: 'data', rows, payload, columns: source.columnTypes?.() }
  port.postMessage(message, [payload.buffer])
}

/** The last stage: encoded bytes with the rows ending in them, or rows serialized a page at a time. */
function sender(source: SourceExtras, format: Formatter | undefined): Writable {
  let sent = 0
  let rows: Row[] = []
  const flushRows = () => {
    const list = rows
    rows = []
    return list.length > 0 ? send(list.length, serialize(list), source) : Promise.resolve()
  }
  return new Writable({
    objectMode: format === undefined,
    write(chunk: Buffer | Row, _encoding, callback) {
      if (format) {
        const ended = format.rows - sent
        sent = format.rows
        send(ended, chunk as Buffer, source).then(() => callback(), callback)
        return
      }
      if (isRaw(chunk)) {
        send(chunk.rows, chunk.payload, source).then(() => callback(), callback)
        return
      }
      if (isRowBatch(chunk)) rows.push(...chunk.rows)
      else rows.push(chunk as Row)
      if (rows.length < CHUNK_ROWS) callback()
      else flushRows().then(() => callback(), callback)
    },
    final(callback) {
      // A format counts a row once it has pushed its bytes: the last rows' count comes after them.
      const last = format ? (format.rows > sent ? send(format.rows - sent, new Uint8Array(0), source) : Promise.resolve()) : flushRows()
      last.then(() => callback(), callback)
    },
  })
}

/** A shard's source, and how its connection ends. */
interface Opened {
  stream: Readable & SourceExtras
  close(failed: boolean): Promise<void>
}

/** Documents as the driver received them (raw BSON, one after another), sent on undecoded. */
interface RawRows {
  raw: true
  rows: number
  payload: Buffer
}

const isRaw = (chunk: unknown): chunk is RawRows => (chunk as Partial<RawRows>).raw === true

async function openPostgres(source: Extract<ShardSource, { kind: 'postgres' }>): Promise<Opened> {
  const client = new pg.Client(typeof source.connection === 'string' ? { connectionString: source.connection } : source.connection)
  client.on('error', () => {}) // a dead backend fails the query too: that is the error reported
  try {
    await client.connect()
    await client.query('begin isolation level repeatable read read only')
    await client.query(`set transaction snapshot ${client.escapeLiteral(source.snapshot)}`)
  } catch (error) {
    await client.end().catch(() => {})
    throw error
  }
  port.postMessage({ type: 'ready' } satisfies ShardMessage)
  return {
    // Handed over as a pool of this one client (never released by the source): the transaction is
    // this worker's own, so PostgreSQL's COPY may write the rows (a caller's client takes the row path).
    stream: postgresSource({
      pool: { connect: () => Promise.resolve(client) },
      text: source.text,
      values: source.values,
      batchSize: source.batchSize,
      ...source.guards,
    }),
    // After a failure or a stop the connection just ends (a COPY may still be running on it).
    close: async (failed) => {
      if (!failed) await client.query('commit')
      await client.end()
    },
  }
}

async function openMongo(source: Extract<ShardSource, { kind: 'mongo' }>): Promise<Opened> {
  const { MongoClient, BSON } = loadOptional<typeof import('mongodb')>('mongodb', 'mongodb')
  const client = new MongoClient(source.url, source.clientOptions)
  await client.connect()
  port.postMessage({ type: 'ready' } satisfies ShardMessage)
  const parse = (text: string) => BSON.EJSON.parse(text, { relaxed: false }) as Record<string, unknown>
  const cursor = client
    .db(source.db)
    .collection(source.collection)
    .find(parse(source.filter), {
      projection: source.projection === undefined ? undefined : parse(source.projection),
      sort: { _id: 1 },
      batchSize: source.batchSize,
      raw: true,
    })
  // Chunks of about 64 KiB of documents, decoded once, by the thread that hands them on.
  async function* chunks(): AsyncGenerator<RawRows> {
    let docs: Buffer[] = []
    let bytes = 0
    for await (const doc of cursor as unknown as AsyncIterable<Buffer>) {
      docs.push(doc)
      bytes += doc.length
      if (bytes < CHUNK_BYTES) continue
      yield { raw: true, rows: docs.length, payload: Buffer.concat(docs) }
      docs = []
      bytes = 0
    }
    if (docs.length > 0) yield { raw: true, rows: docs.length, payload: Buffer.concat(docs) }
  }
  return {
    stream: Readable.from(chunks(), { highWaterMark: 1 }),
    close: async () => {
      await cursor.close().catch(() => {})
      await client.close()
    },
  }
}

async function run(): Promise<void> {
  let opened: Opened | undefined
  try {
    opened = work.source.kind === 'postgres' ? await openPostgres(work.source) : await openMongo(work.source)
    const { stream } = opened
    stop = () => stream.destroy()
    if (stopped) stream.destroy()
    const { encoding } = work
    let format: Formatter | undefined
    if (encoding) {
      const { kind, ...options } = encoding
      format = kind === 'csv' ? csv({ ...options, header: false }) : jsonl(options)
      stream.encodeFor?.(encoding)
      format.useSourceColumns?.(() => stream.columnTypes?.())
    }
    stream.sendBatches?.()
    await pipeline([stream, ...(format ? [format] : []), sender(stream, format)])
    await opened.close(false)
    port.postMessage({ type: 'end', columns: stream.columnTypes?.() } satisfies ShardMessage)
  } catch (error) {
    const { code, stage, message } = toExportError(error, 'ERR_SOURCE', 'source')
    if (!stopped) port.postMessage({ type: 'error', code, stage, message } satisfies ShardMessage)
    await opened?.close(true).catch(() => {})
  } finally {
    port.unref() // the thread exits once its connection has closed
  }
}

void run()
