import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Writable } from 'node:stream'
import { ExportError } from '../errors.js'
import { checkBoolean, checkObject, checkString } from '../options.js'
import type { Sink } from '../types.js'

// writev may write less than asked (a full disk, a signal); writeFile on a handle finishes the rest or throws.
async function writeAll(fh: FileHandle, buffers: Buffer[]): Promise<void> {
  const { bytesWritten } = await fh.writev(buffers)
  const total = buffers.reduce((sum, b) => sum + b.length, 0)
  if (bytesWritten < total) await fh.writeFile(Buffer.concat(buffers).subarray(bytesWritten))
}

export interface FileSinkOptions {
  /** Destination path. An existing file is replaced only when the export succeeds; a directory is refused. */
  path: string
  /**
   * Create missing parent directories (removed again if the export fails). Default `true`;
   * `false` makes a missing directory an ERR_SINK.
   */
  createDirectories?: boolean
}

/**
 * File sink: writes to `<path>.partial-<random>` beside the target, fsyncs and renames it onto `path`
 * on success; on error or abort removes the temporary file and leaves any existing file at `path`
 * untouched. Nothing is created until the first byte (or the end) arrives.
 */
export function fileSink(options: FileSinkOptions): Sink<{ path: string }> {
  checkObject('options', options)
  const { path, createDirectories = true } = options
  checkString('path', path)
  checkBoolean('createDirectories', createDirectories)
  const tempPath = `${path}.partial-${randomBytes(6).toString('hex')}`
  let handle: Promise<FileHandle> | undefined
  let location: { path: string } | undefined
  let stopped = false // destroyed: nothing may be committed any more
  let committing: Promise<void> | undefined

  let createdDirectory: string | undefined // the first directory this sink created, if any

  const openFile = async () => {
    const target = await stat(path).catch(() => undefined)
    if (target?.isDirectory()) throw new ExportError('ERR_SINK', 'sink', `The destination ${JSON.stringify(path)} is a directory`)
    if (createDirectories) createdDirectory = await mkdir(dirname(path), { recursive: true })
    return open(tempPath, 'wx')
  }
  const file = () => (handle ??= openFile())
  // Directories this sink created, deepest first, while they are empty.
  const removeCreatedDirectories = async () => {
    if (createdDirectory === undefined) return
    for (let dir = dirname(path); dir.length >= createdDirectory.length; dir = dirname(dir)) {
      if (
        !(await rmdir(dir).then(
          () => true,
          () => false,
        ))
      )
        return
    }
  }

  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      file()
        .then((fh) => writeAll(fh, [chunk]))
        .then(() => callback(), callback)
    },
    writev(chunks, callback) {
      file()
        .then((fh) =>
          writeAll(
            fh,
            chunks.map((c) => c.chunk as Buffer),
          ),
        )
        .then(() => callback(), callback)
    },
    final(callback) {
      committing = file().then(async (fh) => {
        await fh.datasync()
        await fh.close()
        // The rename is the commit point: a destroy before it keeps the destination as it was.
        if (stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped before the file was renamed')
        await rename(tempPath, path)
        location = { path }
      })
      committing.then(() => callback(), callback)
    },
    destroy(error, callback) {
      stopped = true
      const cleanUp = async () => {
        // A rename under way decides: once it is done, the export has landed.
        await committing?.catch(() => {})
        if (location !== undefined || handle === undefined) return
        await handle.then((fh) => fh.close()).catch(() => {}) // already closed by final, or never opened
        await unlink(tempPath).catch(() => {}) // never created
        await removeCreatedDirectories()
      }
      void cleanUp().then(() => callback(error))
    },
  }) as Sink<{ path: string }>
  Object.defineProperty(sink, 'location', { get: () => location, enumerable: true })
  return sink
}
