// The worker threads that encode a Parquet file's row groups in parallel (see encoder.ts): jobs go
// round-robin, each worker answers its own in order, and every job's promise settles with its
// group or the error. A worker that dies fails what it had.
import { extname, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { EncodedGroup, EncoderWorkerData, GroupJob, GroupSetup } from './encoder.js'

/**
 * A worker's young generation. A group's values live until it is encoded: in V8's default (16 MB
 * here) they outlive two scavenges and are copied into the old generation, and the thread spent
 * half its time collecting them. Measured on 1M statement rows (docs/benchmarks.md, file ETL):
 * 64 MB took the encoder from ~6.5 s to ~4.5 s for ~20 MB more peak memory.
 */
const YOUNG_GENERATION_MB = 64

type Pending = { resolve: (group: EncodedGroup) => void; reject: (error: unknown) => void }

/** The encoder's file: dist/parquet-worker.js or .cjs beside the bundle, or encoder.ts in development. */
function workerFile(): string {
  const here = fileURLToPath(import.meta.url)
  const extension = extname(here)
  return extension === '.ts' ? join(dirname(here), 'encoder.ts') : join(dirname(here), `parquet-worker${extension === '.cjs' ? '.cjs' : '.js'}`)
}

export class RowGroupEncoder {
  readonly #workers: Array<{ worker: Worker; pending: Pending[] }> = []
  #next = 0
  #closed = false

  constructor(setup: GroupSetup, workers: number) {
    const data: EncoderWorkerData = { parquetEncoder: setup }
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(workerFile(), { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } })
      const entry = { worker, pending: [] as Pending[] }
      worker.on('message', (answer: { group?: EncodedGroup; error?: unknown }) => {
        const waiting = entry.pending.shift()
        if (answer.group) waiting?.resolve(answer.group)
        else waiting?.reject(answer.error)
      })
      const fail = (error: unknown) => {
        for (const waiting of entry.pending.splice(0)) waiting.reject(error)
      }
      worker.on('error', fail)
      worker.on('exit', (code) => fail(new Error(`A Parquet encoder thread exited (code ${code}) before it answered`)))
      this.#workers.push(entry)
    }
  }

  /** Encodes a row group on the next worker. */
  encode(job: GroupJob): Promise<EncodedGroup> {
    if (this.#closed) return Promise.reject(new Error('The Parquet encoder threads are closed'))
    const entry = this.#workers[this.#next++ % this.#workers.length]!
    return new Promise<EncodedGroup>((resolve, reject) => {
      entry.pending.push({ resolve, reject })
      // Packed values move to the thread instead of being copied.
      const moved = job.columnData.flatMap((column) => ('packed' in column ? [column.packed.bytes.buffer, column.packed.ends.buffer] : []))
      entry.worker.postMessage(job, moved as ArrayBuffer[])
    })
  }

  /** Ends the workers (what they had fails). */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all(this.#workers.map(({ worker }) => worker.terminate()))
  }
}
