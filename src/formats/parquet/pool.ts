// The worker threads that encode Parquet row groups in parallel (see encoder.ts): jobs go
// round-robin, each thread answers its own in order, and every job's promise settles with its
// group or the error. A thread that dies fails what it had, and the next job starts another.
import { existsSync } from 'node:fs'
import type { Worker } from 'node:worker_threads'
import { startThread, threadFile } from '../../core/threads.js'
import { ENCODER_THREAD, type EncodedGroup, type GroupJob, type GroupSetup, type ThreadJob } from './encoder.js'

/**
 * A worker's young generation. A group's values live until it is encoded: in V8's default (16 MB
 * here) they outlive two scavenges and are copied into the old generation, and the thread spent
 * half its time collecting them. Measured on 1M statement rows (docs/benchmarks.md, file ETL):
 * 64 MB took the encoder from ~6.5 s to ~4.5 s for ~20 MB more peak memory.
 */
const YOUNG_GENERATION_MB = 64

type Pending = { resolve: (group: EncodedGroup) => void; reject: (error: unknown) => void }

/** The encoder's file: dist/parquet-worker.js or .cjs beside the bundle, or encoder.ts in development. */
const workerFile = (): string => threadFile(import.meta.url, 'parquet-worker', 'encoder.ts')

let found: boolean | undefined
/**
 * Whether the encoder's file is there to start threads from. A service bundled with the library
 * inside (esbuild, webpack) has no dist/parquet-worker.js beside it: its files are encoded on the
 * stream's own thread, the same bytes, and a warning says once how to get the threads back.
 */
export function threadsAvailable(): boolean {
  if (found === undefined) {
    found = existsSync(workerFile())
    if (!found)
      process.emitWarning(
        `Parquet row groups are encoded on the stream's own thread: ${workerFile()} is not there (a bundle with stream-export inside). Keep stream-export external, or copy dist/parquet-worker.js beside the bundle, for threads.`,
        { code: 'STREAM_EXPORT_PARQUET_THREADS' },
      )
  }
  return found
}

type Thread = { worker: Worker; pending: Pending[] }

/**
 * The encoder threads, shared by every Parquet file this process writes at once (a partitioned
 * export writes up to `partitionBy.maxOpen`): as many as the largest `workers` of the files using
 * them, started when a file first needs them and ended when the last file lets them go.
 */
const threads: Thread[] = []
let users = 0
let next = 0

/**
 * How long idle threads wait for the next file once the last has let them go: the files of a
 * partitioned export come one after another (the threads do not hold the process open meanwhile).
 */
const IDLE_MS = 1000
let idle: NodeJS.Timeout | undefined

function end(): Promise<unknown> {
  clearTimeout(idle)
  idle = undefined
  return Promise.all(threads.splice(0).map(({ worker }) => worker.terminate()))
}

function start(count: number): void {
  while (threads.length < count) {
    const thread: Thread = {
      worker: startThread(workerFile(), { workerData: ENCODER_THREAD, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } }),
      pending: [],
    }
    const { worker, pending } = thread
    worker.on('message', (answer: { group?: EncodedGroup; error?: unknown }) => {
      const waiting = pending.shift()
      if (answer.group) waiting?.resolve(answer.group)
      else waiting?.reject(answer.error)
    })
    const fail = (error: unknown) => {
      const at = threads.indexOf(thread)
      if (at !== -1) threads.splice(at, 1) // the next job starts another
      for (const waiting of pending.splice(0)) waiting.reject(error)
    }
    worker.on('error', fail)
    worker.on('messageerror', (error) => {
      fail(error)
      void worker.terminate()
    })
    worker.on('exit', (code) => fail(new Error(`A Parquet encoder thread exited (code ${code}) before it answered`)))
    threads.push(thread)
  }
}

/** A file's use of the shared encoder threads: `close()` lets them go (they end with the last user). */
export class RowGroupEncoder {
  readonly #setup: GroupSetup
  readonly #workers: number
  #closed = false

  constructor(setup: GroupSetup, workers: number) {
    this.#setup = setup
    this.#workers = workers
    start(workers)
    users++
    clearTimeout(idle)
    idle = undefined
    for (const { worker } of threads) worker.ref()
  }

  /** Encodes a row group on the next thread. */
  encode(job: GroupJob): Promise<EncodedGroup> {
    if (this.#closed) return Promise.reject(new Error('The Parquet encoder threads are closed'))
    start(this.#workers) // again, if one died
    const thread = threads[next++ % threads.length]!
    return new Promise<EncodedGroup>((resolve, reject) => {
      // Packed values move to the thread instead of being copied.
      const moved = job.columnData.flatMap((column) => ('packed' in column ? [column.packed.bytes.buffer, column.packed.ends.buffer] : []))
      const message: ThreadJob = { setup: this.#setup, job }
      thread.worker.postMessage(message, moved as ArrayBuffer[]) // if this throws, no answer is awaited
      thread.pending.push({ resolve, reject })
    })
  }

  /**
   * Lets the threads go. After the last user, threads still encoding (an export failed or was
   * stopped) are ended at once; idle ones a second later unless another file takes them.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (--users > 0) return
    if (threads.some((thread) => thread.pending.length > 0)) {
      await end()
      return
    }
    for (const { worker } of threads) worker.unref()
    idle = setTimeout(() => void end(), IDLE_MS).unref()
  }
}
