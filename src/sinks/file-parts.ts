// The parts of a split or partitioned export on disk (a file sink's part store, see file.ts). A part's
// name is its run's alone and the manifest is its commit point (src/parts/commit.ts), so a part is
// written straight to its name: no temporary file and rename. Parts are made durable together
// (`sync`, before the manifest or a checkpoint names them), not one fsync each: with thousands of
// partitions the fsyncs, one after another, would cost more than the export itself.
import { mkdir, open, rmdir, unlink, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Writable } from 'node:stream'
import { Checksummer, type ChecksumAlgorithm, type ObjectChecksum } from '../core/checksum.js'
import { ExportError } from '../core/errors.js'
import type { Discardable, Sink } from '../core/types.js'

/** writev may write less than asked (a full disk, a signal); writeFile on a handle finishes the rest or throws. */
export async function writeAll(fh: FileHandle, buffers: Buffer[]): Promise<void> {
  const { bytesWritten } = await fh.writev(buffers)
  const total = buffers.reduce((sum, b) => sum + b.length, 0)
  if (bytesWritten < total) await fh.writeFile(Buffer.concat(buffers).subarray(bytesWritten))
}

/** A part smaller than this is written in one go at its end (most partitions): one write, no more. */
const HELD_BYTES = 64 * 1024
/** Files made durable at once (libuv's thread pool has four threads by default). */
const SYNCING = 4

/** The part files of one export: the folders they need, made once; the parts still to be synced. */
export class PartFiles {
  readonly #createDirectories: boolean
  readonly #folders = new Map<string, Promise<string | undefined>>()
  readonly #unsynced = new Set<string>()
  /** The full checksum each part computes, if any. */
  readonly checksum: ChecksumAlgorithm | false

  constructor(createDirectories: boolean, checksum: ChecksumAlgorithm | false = false) {
    this.#createDirectories = createDirectories
    this.checksum = checksum
  }

  /** A sink writing the part at `path`. */
  sink(path: string): PartFile {
    return new PartFile(path, this)
  }

  /** Makes every part written so far durable (fdatasync); rejects if one cannot be (a part removed meanwhile). */
  async sync(): Promise<void> {
    const paths = [...this.#unsynced]
    for (let at = 0; at < paths.length; at += SYNCING)
      await Promise.all(
        paths.slice(at, at + SYNCING).map(async (path) => {
          try {
            const fh = await open(path, 'r+')
            await fh.datasync().finally(() => fh.close())
          } catch (error) {
            throw new ExportError('ERR_SINK', 'sink', `The part ${path} could not be made durable: ${(error as Error).message}`, { cause: error })
          }
          this.#unsynced.delete(path)
        }),
      )
  }

  /** Removes a part (nothing there is not an error). */
  async remove(path: string): Promise<void> {
    this.#unsynced.delete(path)
    await unlink(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
    })
  }

  /** The part's folder, created once for all its parts; the first folder it created (only to the first caller). */
  folder(path: string): Promise<string | undefined> {
    if (!this.#createDirectories) return Promise.resolve(undefined)
    const dir = dirname(path)
    const made = this.#folders.get(dir)
    if (made) return made.then(() => undefined)
    const making = mkdir(dir, { recursive: true })
    this.#folders.set(dir, making)
    // A folder that could not be made is tried again by the next part.
    making.catch(() => this.#folders.delete(dir))
    return making
  }

  landed(path: string): void {
    this.#unsynced.add(path)
  }
}

/**
 * One part file (see PartFiles): created exclusively at its own name with its first 64 KiB (or at
 * its end), closed at the end without an fsync of its own. A destroy before the end removes it.
 */
export class PartFile extends Writable implements Sink<{ path: string }>, Discardable {
  readonly #path: string
  readonly #files: PartFiles
  #held: Buffer[] = []
  #heldBytes = 0
  #handle: Promise<FileHandle> | undefined
  #createdFolder: string | undefined
  #location: { path: string } | undefined
  #ending: Promise<void> | undefined
  readonly #sum: Checksummer | undefined
  #checksum: ObjectChecksum | undefined

  constructor(path: string, files: PartFiles) {
    super()
    this.#path = path
    this.#files = files
    this.#sum = files.checksum ? new Checksummer(files.checksum) : undefined
  }

  /** `{ path }` once the part is written whole and closed. */
  get location(): { path: string } | undefined {
    return this.#location
  }

  /** The part's full checksum, once it is written whole. */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#sum?.update(chunk)
    this.#take([chunk]).then(() => callback(), callback)
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    for (const { chunk } of chunks) this.#sum?.update(chunk)
    this.#take(chunks.map((each) => each.chunk)).then(() => callback(), callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#ending = this.#flush().then(async (fh) => {
      await fh.close()
      this.#checksum = await this.#sum?.digest()
      this.#location = { path: this.#path }
      this.#files.landed(this.#path)
    })
    this.#ending.then(() => callback(), callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    void this.#cleanUp().then(() => callback(error))
  }

  /** Removes the part once written, and the folders it created if they are empty. */
  async discard(): Promise<void> {
    if (this.#location === undefined) return
    await this.#files.remove(this.#path)
    this.#location = undefined
    await removeCreatedFolders(this.#path, this.#createdFolder)
  }

  async #take(chunks: Buffer[]): Promise<void> {
    this.#held.push(...chunks)
    this.#heldBytes += chunks.reduce((sum, chunk) => sum + chunk.length, 0)
    if (this.#handle !== undefined || this.#heldBytes >= HELD_BYTES) await this.#flush()
  }

  async #flush(): Promise<FileHandle> {
    const fh = await (this.#handle ??= this.#open())
    const held = this.#held
    this.#held = []
    this.#heldBytes = 0
    if (held.length > 0) await writeAll(fh, held)
    return fh
  }

  async #open(): Promise<FileHandle> {
    this.#createdFolder = await this.#files.folder(this.#path)
    // 'wx': a part's name is its run's alone; a file there already is not overwritten.
    return open(this.#path, 'wx')
  }

  async #cleanUp(): Promise<void> {
    await this.#ending?.catch(() => {})
    if (this.#location !== undefined || this.#handle === undefined) return
    const opened = await this.#handle.then(
      (fh) =>
        fh.close().then(
          () => true,
          () => true,
        ), // (already closed by _final)
      () => false, // never created
    )
    if (opened) await this.#files.remove(this.#path).catch(() => {})
    await removeCreatedFolders(this.#path, this.#createdFolder)
  }
}

/** The folders of `path` from its own up to `created` (the first a sink created), deepest first, while they are empty. */
export async function removeCreatedFolders(path: string, created: string | undefined): Promise<void> {
  if (created === undefined) return
  for (let dir = dirname(path); dir.length >= created.length; dir = dirname(dir)) {
    const removed = await rmdir(dir).then(
      () => true,
      () => false,
    )
    if (!removed) return
  }
}
