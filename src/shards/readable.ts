import { open, rm, type FileHandle } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { deserialize } from 'node:v8'
import type { Worker } from 'node:worker_threads'
import { ExportError, invalidOption, STAGE_CODES, toExportError, type ExportErrorCode, type ExportStage } from '../core/errors.js'
import { checkOneOf, checkPositiveInteger, checkString } from '../core/options.js'
import { startThread, threadFile } from '../core/threads.js'
import { encodedRows, rowBatch, type ColumnType, type Row, type SourceExtras, type TextEncoding } from '../core/types.js'
import type { PostgresGuardOptions } from '../sources/postgres/connection.js'
import { exportSpillFolder, sweepSpillFolders } from './spill-folder.js'

// The two ends of in-process shards: worker threads read one key range each (worker.ts) and
// this Readable hands their output on in shard order, holding what runs ahead on disk.

/** What a shard's worker reads: the source of its range, as plain data (it crosses a thread). */
export type ShardSource =
  | {
      kind: 'postgres'
      /** A connection string, or the config of the caller's pool. */
      connection: string | Record<string, unknown>
      /** The snapshot the coordinator exported; the worker's transaction imports it. */
      snapshot: string
      text: string
      values: unknown[]
      batchSize: number
      /** The session guards, set on the worker's connection as on the coordinator's. */
      guards: PostgresGuardOptions
    }
  | {
      kind: 'mongo'
      url: string
      clientOptions: Record<string, unknown>
      db: string | undefined
      collection: string
      /** The range's filter and the projection, as canonical extended JSON (BSON values cross as text). */
      filter: string
      projection: string | undefined
      batchSize: number
    }

/** `workerData` of a shard's worker. */
export interface ShardWork {
  index: number
  source: ShardSource
  /** Encode as the format would (bytes out); absent: row objects out, serialized. */
  encoding?: TextEncoding
  /** Chunks a worker may send before one is acknowledged. */
  window: number
}

/** Messages from a shard's worker. */
export type ShardMessage =
  | { type: 'ready' }
  | { type: 'data'; rows: number; payload: Uint8Array; columns?: ColumnType[] }
  | { type: 'end'; columns?: ColumnType[] }
  | { type: 'error'; code: ExportErrorCode; stage: ExportStage; message: string }

/** What a sharded source does before its workers start, and after. */
export interface ShardPlan {
  /** One per shard, in output order. */
  sources: ShardSource[]
  /** The row count for progress, when asked for (counted while the shards run). */
  total?: Promise<number | undefined>
  /**
   * Frees what the plan held (the coordinator's snapshot and connection): called once, when every
   * shard holds the snapshot and `total` has settled, or on failure with the error.
   */
  release(error?: Error): Promise<void>
}

export interface ShardedReadableOptions {
  plan(): Promise<ShardPlan>
  /** Bytes of each shard's output kept in memory before the rest waits on disk. */
  bufferBytes: number
  /**
   * Where the output of shards running ahead is kept, in this user's and this process's folder
   * (see spill-folder.ts). Default: the system's temp folder.
   */
  tempDir?: string
  /** Whether the shards can encode for a text format (`encodeFor`); otherwise they send rows. */
  encodes: boolean
  /** The rows of a chunk of row objects a shard sent. Default: `v8.deserialize`. */
  decodeRows?(payload: Buffer): Row[]
}

/** A chunk of a shard's output: bytes in which `rows` rows end, or `rows` serialized row objects. */
interface ShardChunk {
  rows: number
  payload: Buffer
}

/** The options every sharded source takes, checked, with their defaults. */
export function shardOptions(options: { shards?: number; bufferBytes?: number; tempDir?: string; count?: string }) {
  const { shards = availableParallelism(), bufferBytes = 8 * 2 ** 20, tempDir, count } = options
  checkPositiveInteger('shards', shards)
  checkPositiveInteger('bufferBytes', bufferBytes)
  if (tempDir !== undefined) checkString('tempDir', tempDir)
  if (count !== undefined) checkOneOf('count', count, ['exact', 'estimate'] as const)
  return { shards, bufferBytes, tempDir, count }
}

/** Checks that an option is plain data, which a worker thread can receive. */
export function checkPlainData(name: string, value: unknown, expected: string): void {
  try {
    structuredClone(value)
  } catch {
    invalidOption(name, `${expected} (it is sent to the shards' threads)`, value)
  }
}

const WINDOW = 4
const STOP_MS = 1000
const HEADER = 8 // payload length, rows: two uint32

/**
 * One shard's output in order: the oldest chunks in memory (up to `limit` bytes), the rest in a
 * file, read back once memory has gone. The worker's chunks are acknowledged once stored; the
 * shard being handed on waits instead of writing to disk when its memory is full.
 */
class ShardChannel {
  readonly #memory: ShardChunk[] = []
  #memoryBytes = 0
  #file: FileHandle | undefined
  #opening: Promise<FileHandle> | undefined
  #writing: Promise<void> = Promise.resolve()
  #writePosition = 0
  #readPosition = 0
  /** Chunks sent to the file and not yet read back. */
  #inFile = 0
  #deferred = 0
  #ended = false
  #wake: (() => void) | undefined
  /** Bytes that went to disk, for the record. */
  spilledBytes = 0
  current = false

  constructor(
    readonly limit: number,
    readonly path: () => Promise<string>,
    readonly ack: (count: number) => void,
  ) {}

  add(chunk: ShardChunk): void {
    if (this.#inFile > 0 || (!this.current && this.#memoryBytes >= this.limit)) {
      this.#inFile++
      this.#writing = this.#writing.then(() => this.#append(chunk))
      this.#writing.then(
        () => {
          this.ack(1)
          this.#signal()
        },
        () => {},
      )
      return
    }
    this.#memory.push(chunk)
    this.#memoryBytes += chunk.payload.length
    if (this.#memoryBytes <= this.limit) this.ack(1)
    else this.#deferred++
    this.#signal()
  }

  end(): void {
    this.#ended = true
    this.#signal()
  }

  /** The next chunk in order; `null` once the shard has ended and everything was read. */
  async next(): Promise<ShardChunk | null> {
    for (;;) {
      const chunk = this.#memory.shift()
      if (chunk) {
        this.#memoryBytes -= chunk.payload.length
        if (this.#deferred > 0 && this.#memoryBytes <= this.limit) {
          this.ack(this.#deferred)
          this.#deferred = 0
        }
        return chunk
      }
      if (this.#inFile > 0) return this.#readBack()
      if (this.#ended) return null
      await new Promise<void>((resolve) => (this.#wake = resolve))
    }
  }

  async close(): Promise<void> {
    await this.#writing.catch(() => {})
    await (this.#opening ?? Promise.resolve(undefined)).then((file) => file?.close()).catch(() => {})
  }

  #signal(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  async #append(chunk: ShardChunk): Promise<void> {
    const file = (this.#file ??= await (this.#opening ??= this.path().then((path) => open(path, 'w+'))))
    const header = Buffer.alloc(HEADER)
    header.writeUInt32LE(chunk.payload.length, 0)
    header.writeUInt32LE(chunk.rows, 4)
    await file.writev([header, chunk.payload], this.#writePosition)
    this.#writePosition += HEADER + chunk.payload.length
    this.spilledBytes += chunk.payload.length
  }

  async #readBack(): Promise<ShardChunk> {
    await this.#writing // the chunk asked for has been written
    const file = this.#file!
    const header = Buffer.alloc(HEADER)
    await file.read(header, 0, HEADER, this.#readPosition)
    const payload = Buffer.allocUnsafe(header.readUInt32LE(0))
    await file.read(payload, 0, payload.length, this.#readPosition + HEADER)
    this.#readPosition += HEADER + payload.length
    // All read back and nothing on its way to the file: the next chunks start it again.
    if (--this.#inFile === 0) {
      this.#readPosition = this.#writePosition = 0
      await file.truncate(0)
    }
    return { rows: header.readUInt32LE(4), payload }
  }
}

/**
 * Asks a worker to stop (its source destroyed, its connection ended: the backend goes at once),
 * and terminates it if it has not exited within a second.
 */
async function stopWorker(worker: Worker): Promise<void> {
  if (worker.threadId === -1) return // exited
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  worker.postMessage({ type: 'stop' })
  const timer = setTimeout(() => void worker.terminate(), STOP_MS)
  await exited
  clearTimeout(timer)
}

/** The worker's file beside this module's (dist/shard-worker.js or .cjs: the build has both). */
const workerFile = (): string => threadFile(import.meta.url, 'shard-worker')

/**
 * A Readable of the rows of every shard, in shard order: each shard runs on a worker thread with
 * its own connection; what a shard has read ahead of its turn waits in memory up to `bufferBytes`
 * and on disk beyond. Encoded bytes when `encodeFor` was asked (exportStream asks for csv() and
 * jsonl() without a transform), row objects otherwise.
 */
export class ShardedReadable extends Readable implements SourceExtras {
  readonly readsAhead = true
  readonly #options: ShardedReadableOptions
  #encoding: TextEncoding | undefined
  #batches = false
  #started = false
  #columns: ColumnType[] | undefined
  #workers: Worker[] = []
  #channels: ShardChannel[] = []
  #plan: ShardPlan | undefined
  #released: Promise<void> | undefined
  #counted: (total: number | undefined) => void = () => {}
  readonly #total = new Promise<number | undefined>((resolve) => (this.#counted = resolve))
  #temp: Promise<string> | undefined
  #wake: (() => void) | undefined

  constructor(options: ShardedReadableOptions) {
    super({ objectMode: true, highWaterMark: 2 })
    this.#options = options
  }

  /** Bytes of output that waited on disk for their shard's turn. */
  get spilledBytes(): number {
    return this.#channels.reduce((sum, channel) => sum + channel.spilledBytes, 0)
  }

  /** Shards running, once planned. */
  get shards(): number {
    return this.#channels.length
  }

  encodeFor(encoding: TextEncoding, onEncoding?: () => void): void {
    if (!this.#options.encodes) return
    this.#encoding = encoding
    onEncoding?.() // the workers encode: this thread only hands bytes on
  }

  sendBatches(): void {
    this.#batches = true
  }

  columnTypes(): ColumnType[] | undefined {
    return this.#columns
  }

  /** The plan's row count (`count` option), once it is known; `undefined` without one. */
  countRows(): Promise<number | undefined> {
    return this.#total
  }

  override _read(): void {
    if (this.#started) {
      const wake = this.#wake
      this.#wake = undefined
      wake?.()
      return
    }
    this.#started = true
    this.#run().catch((error: Error) => this.destroy(toExportError(error, 'ERR_SOURCE', 'source')))
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
    const cleanup = async () => {
      await Promise.all(this.#workers.map(stopWorker))
      await Promise.all(this.#channels.map((channel) => channel.close()))
      const temp = await this.#temp?.catch(() => undefined)
      if (temp) await rm(temp, { recursive: true, force: true })
      await this.#release(error ?? undefined)
    }
    cleanup().then(
      () => callback(error),
      (cleanupError: Error) => callback(error ?? cleanupError),
    )
  }

  async #run(): Promise<void> {
    // What killed processes' exports left in the temp folder goes while the plan is made.
    const swept = sweepSpillFolders(this.#options.tempDir)
    const plan = (this.#plan = await this.#options.plan().catch((error: unknown) => {
      this.#counted(undefined)
      throw error
    }))
    await swept
    if (plan.total) plan.total.then(this.#counted, () => this.#counted(undefined))
    else this.#counted(undefined)
    // Destroyed while planning: nothing else holds the coordinator's connection.
    if (this.destroyed) return this.#release(new Error('The export stopped before its shards started'))
    const tempDir = () => (this.#temp ??= exportSpillFolder(this.#options.tempDir))
    let ready = 0
    const file = workerFile()
    plan.sources.forEach((source, index) => {
      const work: ShardWork = { index, source, encoding: this.#encoding, window: WINDOW }
      const worker = startThread(file, { workerData: work })
      const channel = new ShardChannel(
        this.#options.bufferBytes,
        async () => join(await tempDir(), `shard-${index}`),
        (count) => worker.postMessage({ type: 'ack', count }),
      )
      this.#workers.push(worker)
      this.#channels.push(channel)
      let ended = false
      worker.on('message', (message: ShardMessage) => {
        if (this.destroyed) return
        if (message.type === 'ready') {
          // Every shard holds the snapshot: the coordinator lets it go once the count (if any) is in.
          if (++ready === plan.sources.length)
            void Promise.resolve(plan.total)
              .catch(() => undefined)
              .then(() => this.#release())
              .catch((error: Error) => this.destroy(toExportError(error, 'ERR_SOURCE', 'source')))
        } else if (message.type === 'data') {
          this.#columns ??= message.columns
          channel.add({ rows: message.rows, payload: Buffer.from(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength) })
        } else if (message.type === 'end') {
          this.#columns ??= message.columns
          ended = true
          channel.end()
        } else {
          const stage = message.stage
          this.destroy(new ExportError(message.code ?? STAGE_CODES[stage], stage, `Shard ${index + 1} of ${plan.sources.length}: ${message.message}`))
        }
      })
      worker.on('error', (error) => this.destroy(toExportError(error, 'ERR_SOURCE', 'source')))
      worker.on('exit', (code) => {
        if (!ended && !this.destroyed)
          this.destroy(new ExportError('ERR_SOURCE', 'source', `Shard ${index + 1} of ${plan.sources.length}: its worker stopped (exit code ${code})`))
      })
    })
    for (let i = 0; i < this.#channels.length; i++) {
      const channel = this.#channels[i]!
      channel.current = true
      for (let chunk = await channel.next(); chunk; chunk = await channel.next()) {
        if (this.destroyed) return
        if (!this.#pushChunk(chunk)) await new Promise<void>((resolve) => (this.#wake = resolve))
        if (this.destroyed) return
      }
    }
    if (!this.destroyed) this.push(null)
  }

  /** Releases the plan, once it exists, once (after a failure: with its error). */
  #release(error?: Error): Promise<void> {
    if (!this.#plan) return Promise.resolve()
    return (this.#released ??= this.#plan.release(error))
  }

  #pushChunk({ rows, payload }: ShardChunk): boolean {
    if (this.#encoding) return payload.length === 0 && rows === 0 ? true : this.push(encodedRows(rows, payload))
    const list = this.#options.decodeRows?.(payload) ?? (deserialize(payload) as Row[])
    if (this.#batches) return this.push(rowBatch(list))
    let more = true
    for (const row of list) more = this.push(row)
    return more
  }
}
