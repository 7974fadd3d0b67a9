import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { lstat, mkdir, mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ExportError } from '../core/errors.js'

// Where in-process shards keep what they read ahead of their turn:
//   <tempDir>/stream-export-spill-<uid>/<pid>-<random>/export-<random>/shard-<n>
// An export's folder goes when the export ends; the process's folder when the process exits (any
// exit that runs code: the end of the event loop, process.exit, an uncaught error). A process that
// cannot run code (SIGKILL, a crash, a signal without a handler) leaves its folder: the next
// sharded export's start under the same tempDir sweeps it (sweepSpillFolders).

const MINUTE = 60_000
/** How often a process marks its folder as in use (its modification time). */
const HEARTBEAT_MS = MINUTE
/**
 * A folder whose pid is not running and that was not touched for this long is swept. Younger, it
 * may be a live process of another pid namespace (containers sharing a temp folder): its heartbeat
 * keeps its folder younger than this.
 */
const DEAD_AFTER_MS = 10 * MINUTE
/** Any folder not touched for this long is swept: its pid has been reused (a live process touches its folder every minute). */
const STALE_AFTER_MS = 24 * 60 * MINUTE
/** A process's folder: `<pid>-<random>`. */
const PROCESS_FOLDER = /^(\d+)-[0-9a-f]+$/

const uid = process.getuid?.()

/** This thread's process folder under each root it has spilled to. */
const folders = new Map<string, string>()
let heartbeat: NodeJS.Timeout | undefined

/** The parent of every process's spill folder under `tempDir`: one per user, which only that user can write to. */
export function spillRoot(tempDir = tmpdir()): string {
  return join(tempDir, uid === undefined ? 'stream-export-spill' : `stream-export-spill-${uid}`)
}

/**
 * A new folder for one export's spill files, in this process's folder under `tempDir` (default:
 * the system's temp folder; created on first use, removed when the process exits). The caller
 * removes the export's folder.
 */
export async function exportSpillFolder(tempDir?: string): Promise<string> {
  const root = spillRoot(tempDir)
  await mkdir(root, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error
  })
  const refusal = await notOwnOnly(root)
  if (refusal) throw new ExportError('ERR_SOURCE', 'source', `Cannot keep shard output in ${root}: ${refusal}; remove it, or give \`tempDir\``)
  let folder = folders.get(root)
  if (folder === undefined) {
    folder = join(root, `${process.pid}-${randomBytes(4).toString('hex')}`)
    folders.set(root, folder)
    if (folders.size === 1) {
      process.on('exit', removeProcessFolders)
      heartbeat = setInterval(touchProcessFolders, HEARTBEAT_MS).unref()
    }
  }
  // Again each time: a temp cleaner may have removed it while no export used it.
  await mkdir(folder, { recursive: true, mode: 0o700 })
  return mkdtemp(join(folder, 'export-'))
}

/**
 * Removes the spill folders of processes that can no longer run under `tempDir`: one whose pid
 * is not running and that was not touched for 10 minutes, and any not touched for a day. Never this
 * thread's own folder, and never one a running process touches (every minute). Best effort: what
 * cannot be read or removed stays; it never rejects.
 */
export async function sweepSpillFolders(tempDir?: string): Promise<void> {
  const root = spillRoot(tempDir)
  const names = await notOwnOnly(root)
    .then((refusal) => (refusal ? [] : readdir(root)))
    .catch(() => []) // no root yet: nothing to sweep
  const now = Date.now()
  const own = folders.get(root)
  await Promise.all(
    names.map(async (name) => {
      const pid = PROCESS_FOLDER.exec(name)?.[1]
      const folder = join(root, name)
      if (pid === undefined || folder === own) return
      try {
        const age = now - (await stat(folder)).mtimeMs
        if (age > STALE_AFTER_MS || (age > DEAD_AFTER_MS && !isRunning(Number(pid)))) await rm(folder, { recursive: true, force: true })
      } catch {
        // Gone meanwhile (another process swept it), or not ours to remove: it stays.
      }
    }),
  )
}

/** Why `root` is not a folder only this user can write to (a link, another owner, writable by others); undefined when it is. */
async function notOwnOnly(root: string): Promise<string | undefined> {
  const stats = await lstat(root)
  if (!stats.isDirectory()) return 'it is not a folder'
  if (uid !== undefined && (stats.uid !== uid || (stats.mode & 0o022) !== 0))
    return `it belongs to user ${stats.uid} with mode ${(stats.mode & 0o7777).toString(8)}, not to user ${uid} alone`
  return undefined
}

/** Whether a process with this pid runs (one of another user's counts: EPERM). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

function touchProcessFolders(): void {
  const now = new Date()
  for (const folder of folders.values()) utimes(folder, now, now).catch(() => {})
}

/** On exit only synchronous work runs. */
function removeProcessFolders(): void {
  clearInterval(heartbeat)
  for (const folder of folders.values()) {
    try {
      rmSync(folder, { recursive: true, force: true })
    } catch {
      // Left for the next sharded export's sweep.
    }
  }
}
