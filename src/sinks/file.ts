import { randomBytes } from 'node:crypto'
import { link, lstat, mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { checkChecksumOption, Checksummer, type ChecksumAlgorithm, type ObjectChecksum } from '../core/checksum.js'
import { ExportError, invalidOption } from '../core/errors.js'
import { checkBoolean, checkObject, checkString, optionNames } from '../core/options.js'
import type { Discardable, PartStore, Sink, SplitSink, StageTelemetry } from '../core/types.js'
import { PartFiles, removeCreatedFolders, writeAll } from './file-parts.js'

export interface FileSinkOptions {
  /** Destination path. An existing file is replaced only when the export succeeds; a directory is refused. */
  path: string
  /**
   * Create missing parent directories (removed again if the export fails). Default `true`;
   * `false` makes a missing directory an ERR_SINK.
   */
  createDirectories?: boolean
  /**
   * The file's full checksum, computed as the bytes are written (the result's `checksum`):
   * `CRC64NVME` (default, what S3 shows for the same bytes), `CRC32C`, `CRC32`, or `false`.
   */
  checksum?: ChecksumAlgorithm | false
  /**
   * `false`: never replace a file. One at the path is refused before any byte is written
   * (ERR_PRECONDITION), and the commit is a hard link that fails if one appeared meanwhile, instead
   * of a rename that would replace it. Default `true`.
   */
  overwrite?: boolean
}

/** File sink options checked and defaulted, apart from any stream. */
export type NormalizedFileSinkOptions = Readonly<Required<FileSinkOptions>>

// What link() answers on a file system without hard links.
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK'])

const FILE_SINK_OPTION_NAMES = optionNames<FileSinkOptions>({ path: true, createDirectories: true, checksum: true, overwrite: true })

/** Checks fileSink options and fills in the defaults; throws ERR_INVALID_OPTION naming the option. */
export function normalizeFileSinkOptions(options: FileSinkOptions): NormalizedFileSinkOptions {
  checkObject('options', options, FILE_SINK_OPTION_NAMES)
  const { path, createDirectories = true, overwrite = true } = options
  checkString('path', path)
  checkBoolean('createDirectories', createDirectories)
  checkBoolean('overwrite', overwrite)
  return Object.freeze({ path, createDirectories, checksum: checkChecksumOption('checksum', options.checksum), overwrite })
}

/**
 * A file sink (see `fileSink`). The rename of the temporary file is its commit point: a destroy
 * before it removes the temporary file; a destroy during it waits for it.
 */
export class FileSink extends Writable implements Sink<{ path: string }>, SplitSink<{ path: string }>, Discardable {
  readonly #path: string
  readonly #tempPath: string
  readonly #createDirectories: boolean
  readonly #options: NormalizedFileSinkOptions
  readonly #sum: Checksummer | undefined
  #checksum: ObjectChecksum | undefined
  #handle: Promise<FileHandle> | undefined
  #location: { path: string } | undefined
  #stopped = false // destroyed: nothing may be committed any more
  #committing: Promise<void> | undefined
  #createdDirectory: string | undefined // the first directory this sink created, if any
  #telemetry: StageTelemetry | undefined

  constructor(options: NormalizedFileSinkOptions) {
    super()
    const { path, createDirectories, checksum } = options
    this.#options = options
    this.#path = path
    this.#tempPath = `${path}.partial-${randomBytes(6).toString('hex')}`
    this.#createDirectories = createDirectories
    this.#sum = checksum ? new Checksummer(checksum) : undefined
  }

  /** Where the sink records its commit (the rename), under the export's span. */
  setTelemetry(telemetry: StageTelemetry): void {
    this.#telemetry = telemetry
  }

  /** `{ path }` once the file has been renamed into place. */
  get location(): { path: string } | undefined {
    return this.#location
  }

  /** The file's full checksum, once it is in place (unless the `checksum` option is `false`). */
  get checksum(): ObjectChecksum | undefined {
    return this.#checksum
  }

  /**
   * The files of a split export beside this sink's path: parts written straight to their own
   * names and synced together before the manifest (file-parts.ts); the manifest written as this
   * sink writes its file.
   */
  partStore(): PartStore<{ path: string }> {
    const { createDirectories, checksum, overwrite } = this.#options
    // (The manifest of a split export is its commit point: a condition on it is not offered yet.)
    if (!overwrite) invalidOption('overwrite', 'unset for a split or partitioned export (one file only, for now)', overwrite)
    const parts = new PartFiles(createDirectories, checksum)
    const missing = (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
      return undefined
    }
    return {
      name: this.#path,
      sink: (path) => parts.sink(path),
      read: (path) => readFile(path).catch(missing),
      async write(path, body) {
        const sink = new FileSink({ path, createDirectories, checksum: false, overwrite: true })
        await pipeline(Readable.from([body]), sink)
        return sink.location!
      },
      remove: (path) => parts.remove(path),
      sync: () => parts.sync(),
      locationOf: (path) => ({ path }),
      // Files in the folder of `prefix` and below it (a partitioned export's folders).
      // Named as the prefix names them (`./out/acme.csv` for `./out/`: not normalised).
      async list(prefix) {
        const head = prefix.slice(0, Math.max(prefix.lastIndexOf('/'), prefix.lastIndexOf('\\')) + 1)
        const dir = head === '' ? '.' : head
        const entries = (await readdir(dir, { recursive: true, withFileTypes: true }).catch(missing)) ?? []
        return entries
          .filter((entry) => entry.isFile())
          .map((entry) => head + relative(dir, join(entry.parentPath, entry.name)))
          .filter((path) => path.startsWith(prefix))
      },
    }
  }

  /** Removes the file this sink renamed into place, and the folders it created if they are empty. */
  async discard(): Promise<void> {
    if (this.#location === undefined) return
    await unlink(this.#path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
    })
    this.#location = undefined
    await removeCreatedFolders(this.#path, this.#createdDirectory)
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#sum?.update(chunk)
    this.#file()
      .then((fh) => writeAll(fh, [chunk]))
      .then(() => callback(), callback)
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    for (const { chunk } of chunks) this.#sum?.update(chunk)
    this.#file()
      .then((fh) =>
        writeAll(
          fh,
          chunks.map((c) => c.chunk),
        ),
      )
      .then(() => callback(), callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#committing = this.#file().then(async (fh) => {
      const checksum = await this.#sum?.digest()
      await fh.datasync()
      await fh.close()
      // The rename is the commit point: a destroy before it keeps the destination as it was.
      if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped before the file was renamed')
      const commit = () => (this.#options.overwrite ? rename(this.#tempPath, this.#path) : this.#linkNew())
      await (this.#telemetry ? this.#telemetry.span('stream-export commit', { 'stream_export.path': this.#path }, commit) : commit())
      this.#checksum = checksum
      this.#location = { path: this.#path }
    })
    this.#committing.then(() => callback(), callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopped = true
    void this.#cleanUp().then(() => callback(error))
  }

  // The commit of `overwrite: false`: a link fails where rename would replace (EEXIST). A file
  // system without hard links (exFAT, FAT, some network and FUSE mounts) gets the name reserved
  // instead (an empty file created exclusively: it fails the same way), and the temporary file
  // renamed onto that reservation: never a half-written file under the name, though an empty one
  // may be seen for that moment (and stays if the process dies in it).
  async #linkNew(): Promise<void> {
    const appeared = (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error
      throw new ExportError('ERR_PRECONDITION', 'sink', `A file appeared at ${this.#path} while the export ran (overwrite: false)`, { cause: error })
    }
    const linked = await link(this.#tempPath, this.#path).then(
      () => true,
      (error: NodeJS.ErrnoException) => (NO_HARD_LINKS.has(error.code ?? '') ? false : appeared(error)),
    )
    if (linked) return void (await unlink(this.#tempPath).catch(() => {})) // landed: a leftover name is only clutter
    await (await open(this.#path, 'wx').catch(appeared)).close()
    await rename(this.#tempPath, this.#path).catch(async (error: unknown) => {
      await unlink(this.#path).catch(() => {}) // our own reservation
      throw error
    })
  }

  #file(): Promise<FileHandle> {
    return (this.#handle ??= this.#open())
  }

  async #open(): Promise<FileHandle> {
    const target = await stat(this.#path).catch(() => undefined)
    if (target?.isDirectory()) throw new ExportError('ERR_SINK', 'sink', `The destination ${JSON.stringify(this.#path)} is a directory`)
    // (lstat: a dangling symbolic link is a name taken as well.)
    if (!this.#options.overwrite && (target ?? (await lstat(this.#path).catch(() => undefined))))
      throw new ExportError('ERR_PRECONDITION', 'sink', `Refused before any byte was written: a file exists at ${this.#path} (overwrite: false)`)
    if (this.#createDirectories) this.#createdDirectory = await mkdir(dirname(this.#path), { recursive: true })
    return open(this.#tempPath, 'wx')
  }

  async #cleanUp(): Promise<void> {
    // A rename under way decides: once it is done, the export has landed.
    await this.#committing?.catch(() => {})
    if (this.#location !== undefined || this.#handle === undefined) return
    await this.#handle.then((fh) => fh.close()).catch(() => {}) // already closed by final, or never opened
    await unlink(this.#tempPath).catch(() => {}) // never created
    await removeCreatedFolders(this.#path, this.#createdDirectory)
  }
}

/**
 * File sink: writes to `<path>.partial-<random>` beside the target, fsyncs and renames it onto `path`
 * on success; on error or abort removes the temporary file (and folders it created) and leaves any
 * existing file at `path` untouched. Nothing is created until the first byte (or the end) arrives.
 */
export function fileSink(options: FileSinkOptions): FileSink {
  return new FileSink(normalizeFileSinkOptions(options))
}
