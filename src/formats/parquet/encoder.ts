// One row group of a Parquet file, encoded by hyparquet-writer on its own: the bytes of its column
// chunks and their metadata, with file offsets as if the group began right after the file's
// "PAR1" magic; the file's writer moves them to where the group lands (see `RowGroupFile`).
// Worker threads run this file (dist/parquet-worker.js; in development the .ts itself, which is why
// it imports nothing of ours), and the format runs it in-thread for a file of one row group.
import { parentPort, workerData } from 'node:worker_threads'
import { gzipSync } from 'node:zlib'
import { ByteWriter, ParquetWriter } from 'hyparquet-writer'

/** What every row group of a file is encoded with. */
export interface GroupSetup {
  /** The Parquet schema: the root, then one element per column. */
  schema: unknown[]
  codec: 'SNAPPY' | 'ZSTD' | 'GZIP' | 'UNCOMPRESSED'
}

/**
 * A column's values (text as UTF-8) in one buffer: value i ends at `ends[i]`, or is null where
 * `ends[i]` is negative (`-1 - end`). Posted to a thread, its two buffers move instead of being copied.
 */
export interface Packed {
  bytes: Uint8Array
  ends: Int32Array
}

/** A column of a row group: its converted values, or its text packed (see `prepareColumn`). */
export type JobColumn = { name: string; data: unknown[] } | { name: string; packed: Packed; encoding?: 'PLAIN' }

/** A row group to encode. */
export interface GroupJob {
  columnData: JobColumn[]
  rows: number
}

/** The row group's bytes (from file offset 4) and hyparquet-writer's metadata of them. */
export interface EncodedGroup {
  bytes: Uint8Array
  /** The RowGroup of the file's metadata. */
  rowGroup: unknown
  /** The page indexes of its column chunks (their `chunk`s are the RowGroup's own objects). */
  indexes: unknown[]
}

export type Compressors = Record<string, (input: Uint8Array) => Uint8Array>

/** The "PAR1" a ParquetWriter writes first: the group's offsets count from its end. */
export const MAGIC_BYTES = 4

/** Encodes one row group as the file's own ParquetWriter would write it after the magic. */
export function encodeRowGroup(setup: GroupSetup, compressors: Compressors, job: GroupJob): EncodedGroup {
  const writer = new ByteWriter(roughGroupBytes(job))
  const parquet = new ParquetWriter({ writer, schema: setup.schema as never, codec: setup.codec, compressors })
  const columnData = job.columnData.map(unpackColumn)
  void parquet.write({ columnData, rowGroupSize: job.rows }) // synchronous on a ByteWriter
  const internals = parquet as unknown as { row_groups: unknown[]; pendingIndexes: unknown[] }
  const length = writer.index - MAGIC_BYTES
  return {
    // A small group is copied out of the writer's 1 MB buffer: the bytes live on until the file's
    // sink has written them (a partition's file holds its first 64 KiB), and a thread moves the buffer.
    bytes:
      2 * length < writer.buffer.byteLength
        ? new Uint8Array(writer.buffer.slice(MAGIC_BYTES, writer.index))
        : new Uint8Array(writer.buffer, MAGIC_BYTES, length),
    // The metadata outlives the group (until the footer): its statistics must not hold the group's text.
    rowGroup: detached(internals.row_groups[0]),
    indexes: internals.pendingIndexes.map(detached),
  }
}

/**
 * About what the group's bytes take, at most 1 MB, to start the writer's buffer near its size (a
 * small group in a large buffer zeroes memory it never uses; a larger group grows it): packed
 * values' bytes, and 8 a value for the rest (a dictionary's text is mostly short indexes).
 */
function roughGroupBytes(job: GroupJob): number {
  let bytes = 64 * 1024
  for (const column of job.columnData) bytes += 'packed' in column ? column.packed.bytes.byteLength : 8 * job.rows
  return Math.min(bytes, 1 << 20)
}

/**
 * The metadata with each byte array that is a view of a larger buffer (a min or max value of the
 * column's UTF-8 text) copied out, in place: else it would keep that buffer alive, and posting it
 * to another thread would copy the whole buffer.
 */
function detached<T>(value: T): T {
  if (value instanceof Uint8Array) return (value.byteLength === value.buffer.byteLength ? value : value.slice()) as T
  if (Array.isArray(value)) for (let i = 0; i < value.length; i++) value[i] = detached<unknown>(value[i])
  else if (typeof value === 'object' && value !== null)
    for (const key of Object.keys(value)) (value as Record<string, unknown>)[key] = detached((value as Record<string, unknown>)[key])
  return value
}

type Element = { type?: string; converted_type?: string }

/**
 * Whether a text column surely loses with a dictionary, by hyparquet-writer's own first test
 * (dictionary.js): in 1,000 values spread over the column, the distinct ones (each with its 4-byte
 * length) are more than 90% of the bytes. Only that test is made here; a column that passes it
 * is left to the writer's whole decision (which builds the dictionary and keeps it if it halves
 * the column), so the choice is the writer's own.
 */
function surelyPlain(data: unknown[]): boolean {
  const count = Math.min(data.length, 1000)
  const seen = new Set<string>()
  let distinct = 0
  let total = 0
  for (let i = 0; i < count; i++) {
    const value = data[count === 1 ? 0 : Math.floor((i * (data.length - 1)) / (count - 1))]
    if (typeof value !== 'string') continue // null: no bytes
    total += value.length + 4
    if (seen.has(value)) continue
    seen.add(value)
    distinct += value.length + 4
  }
  return !total || distinct / total > 0.9
}

/**
 * A column as the writer encodes it fastest. The writer turns each string into UTF-8 with a call
 * and an allocation of its own (most of its time on text), a string posted to a thread is copied
 * twice, and a posted byte array copies its whole buffer (a Buffer of a few bytes may be a view of
 * an 8 KB pool). So byte columns, and text columns that surely lose with a dictionary (ids,
 * amounts, times, free text; see `surelyPlain`), are packed into one buffer at once, moved to the
 * thread whole, and given to the writer as views of it (that text written PLAIN, as the writer
 * would; bytes as the writer decides). Other text columns keep their strings for the writer to
 * decide (a dictionary encodes only the distinct values).
 */
export function prepareColumn(element: unknown, name: string, data: unknown[]): JobColumn {
  const { type, converted_type } = element as Element
  if (type !== 'BYTE_ARRAY') return { name, data }
  if (converted_type !== 'UTF8') return { name, packed: pack(data) }
  if (!surelyPlain(data)) return { name, data }
  return { name, packed: pack(data), encoding: 'PLAIN' }
}

/** Strings (as UTF-8) or byte arrays in one buffer of their own; anything else is null. */
function pack(data: unknown[]): Packed {
  let bound = 0
  for (const value of data) bound += typeof value === 'string' ? value.length * 3 : value instanceof Uint8Array ? value.byteLength : 0 // UTF-8 takes at most 3 bytes a UTF-16 unit
  const buffer = Buffer.allocUnsafeSlow(bound) // its own ArrayBuffer, to be moved
  const ends = new Int32Array(data.length)
  let at = 0
  for (let i = 0; i < data.length; i++) {
    const value = data[i]
    if (typeof value === 'string') {
      ends[i] = at += buffer.write(value, at) // a lone surrogate becomes U+FFFD, as TextEncoder writes it
    } else if (value instanceof Uint8Array) {
      buffer.set(value, at)
      ends[i] = at += value.byteLength
    } else ends[i] = -1 - at
  }
  return { bytes: new Uint8Array(buffer.buffer, 0, at), ends }
}

/** The column as hyparquet-writer takes it: packed values as views of their buffer. */
function unpackColumn(column: JobColumn) {
  if (!('packed' in column)) return column
  const { bytes, ends } = column.packed
  const data = new Array<Uint8Array | null>(ends.length)
  let start = 0
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i]!
    if (end < 0) data[i] = null
    else data[i] = bytes.subarray(start, (start = end))
  }
  return { name: column.name, data, encoding: column.encoding }
}

type Zstd = { compress(input: Uint8Array, level?: number): Uint8Array }
export type ZstdCodec = { ZstdCodec: { run(cb: (z: { Simple: new () => Zstd }) => void): void } }

/** The compressors for GZIP and ZSTD (SNAPPY is hyparquet-writer's own); ZSTD's codec starts asynchronously. */
export async function compressorsFor(codec: GroupSetup['codec'], zstdCodec?: ZstdCodec): Promise<Compressors> {
  const compressors: Compressors = { GZIP: (input) => new Uint8Array(gzipSync(input)) }
  if (codec !== 'ZSTD') return compressors
  let loaded = zstdCodec
  if (!loaded) {
    const name = 'zstd-codec' // an optional package, checked for when the format was made
    const module = (await import(name)) as ZstdCodec & { default?: ZstdCodec }
    loaded = module.default ?? module
  }
  const zstd = await new Promise<Zstd>((resolve) => loaded.ZstdCodec.run((z) => resolve(new z.Simple())))
  compressors.ZSTD = (input) => zstd.compress(input, 3)
  return compressors
}

/** What a thread is asked: a row group, with what its file encodes groups with. */
export interface ThreadJob {
  setup: GroupSetup
  job: GroupJob
}

/** Marks a thread started by the encoder pool (the file is also imported by the library itself). */
export const ENCODER_THREAD = 'stream-export parquet encoder'

// A thread of the encoder pool: jobs in, in order; each encoded group (its bytes moved) or the error out.
const port = parentPort
if (port && workerData === ENCODER_THREAD) {
  const compressors = new Map<string, Promise<Compressors>>() // per codec, made once
  let done: Promise<void> = Promise.resolve()
  port.on('message', ({ setup, job }: ThreadJob) => {
    let made = compressors.get(setup.codec)
    if (!made) compressors.set(setup.codec, (made = compressorsFor(setup.codec)))
    done = done
      .then(() => made)
      .then((ready) => {
        const group = encodeRowGroup(setup, ready, job)
        port.postMessage({ group }, [group.bytes.buffer as ArrayBuffer])
      })
      .catch((error: unknown) => port.postMessage({ error }))
  })
}
