// Where in-process shards spill, and who removes it when a process dies: real child processes
// running sharded exports from the build (worker threads load dist), killed while they spill.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import pg from 'pg'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import * as dist from '../dist/index.js'
import { databaseUrl } from './fixtures/postgres.js'
import { collector, tempDir } from './helpers.js'

const { csv, exportStream, postgresShardedSource } = dist
const TABLE = 'se_spill'
const ROWS = 60000
const MINUTE = 60_000
/** The well-known parent of every process's spill folder under a temp folder (docs/errors.md). */
const ROOT = `stream-export-spill${process.getuid ? `-${process.getuid()}` : ''}`

/**
 * A sharded export of TABLE to a file that stops at row 1,000 until the file `go` exists (the
 * later shards meanwhile spill what they read ahead), then finishes, or calls process.exit(3)
 * when `mode` is `exit`.
 */
const CHILD = `
import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { csv, exportStream, fileSink, postgresShardedSource } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)}
const [spill, out, go, mode] = process.argv.slice(2)
await exportStream({
  source: postgresShardedSource({ connectionString: process.env.DATABASE_URL, table: ${JSON.stringify(TABLE)}, shards: 3, bufferBytes: 16 * 1024, tempDir: spill }),
  format: csv(),
  transform: async (row, i) => {
    if (i === 1000) {
      while (!existsSync(go)) await sleep(20)
      if (mode === 'exit') process.exit(3)
    }
    return row
  },
  sink: fileSink({ path: out }),
})
`

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await pool.query(`drop table if exists ${TABLE}`)
  await pool.query(`create table ${TABLE} as select i::bigint as id, md5(i::text) as v from generate_series(1, ${ROWS}) i`)
  await pool.query(`alter table ${TABLE} add primary key (id)`)
  await pool.end()
})

/** A child process running CHILD; SIGKILLed when the test ends if it still runs. */
async function startExport(spill: string, dir: string, name: string, mode = '') {
  const script = join(dir, 'child.mjs')
  if (!existsSync(script)) await writeFile(script, CHILD)
  const go = join(dir, `${name}.go`)
  const child = spawn(process.execPath, [script, spill, join(dir, `${name}.csv`), go, mode], { env: process.env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (data) => (stderr += data))
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return { pid: child.pid!, child, exited, stderr: () => stderr, go: () => writeFile(go, '') }
}

/** Every file under `dir`, as a path. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name))
}

/**
 * Waits until a child's two later shards (of three; the first is handed on, it never waits on
 * disk) have spilled into files other than `known` under `spill`, and returns those files.
 */
async function waitForSpill(spill: string, known: string[] = []): Promise<string[]> {
  const spilled = async () => {
    const found: string[] = []
    for (const file of await filesUnder(spill)) if (!known.includes(file) && (await stat(file)).size > 0) found.push(file)
    return found
  }
  await expect.poll(async () => (await spilled()).length, { timeout: 20_000, interval: 50 }).toBe(2)
  return spilled()
}

/** Sets the times of everything under `dir` (not `dir` itself) `ms` back. */
async function age(dir: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms)
  for (const entry of await readdir(dir, { recursive: true })) await utimes(join(dir, entry), then, then)
}

/** A sharded export in this process (it spills nothing): its start sweeps `spill`. */
async function shardedExport(spill: string): Promise<void> {
  const sink = collector()
  const result = await exportStream({
    source: postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, shards: 2, tempDir: spill }),
    format: csv(),
    sink,
  })
  expect(result.rows).toBe(ROWS)
}

describe('shard spill folders', () => {
  it("a SIGKILLed export's spill folder is removed at the next sharded export's start; a live process's folder is kept", async () => {
    const dir = await tempDir()
    const spill = await tempDir()
    // A live export, held mid-way with its later shards spilled.
    const live = await startExport(spill, dir, 'live')
    const liveFiles = await waitForSpill(spill)
    // An export killed while it spills: nothing of it can run.
    const killed = await startExport(spill, dir, 'killed')
    const killedFiles = await waitForSpill(spill, liveFiles)
    killed.child.kill('SIGKILL')
    expect(await killed.exited).toBe('SIGKILL')
    expect(await filesUnder(spill)).toEqual(expect.arrayContaining(killedFiles)) // left behind
    // Both an hour old: only the pid tells the dead from the live. Besides them, the folder of a
    // dead pid that is minutes old (it may be a live process of another pid namespace: kept), and
    // one of a live pid that is two days old (the pid was reused: removed).
    await age(spill, 60 * MINUTE)
    const young = join(spill, ROOT, `${killed.pid}-00000000`)
    const reused = join(spill, ROOT, `${live.pid}-ffffffff`)
    for (const folder of [young, reused]) {
      await mkdir(folder, { recursive: true })
      await writeFile(join(folder, 'shard-1'), 'x')
    }
    await utimes(reused, new Date(Date.now() - 2 * 24 * 60 * MINUTE), new Date(Date.now() - 2 * 24 * 60 * MINUTE))

    await shardedExport(spill)
    expect(killedFiles.filter((file) => existsSync(file))).toEqual([])
    expect(liveFiles.filter((file) => !existsSync(file))).toEqual([])
    expect(existsSync(young)).toBe(true)
    expect(existsSync(reused)).toBe(false)
    // <tempDir>/stream-export-spill-<uid>/<pid>-<random>/export-<random>/shard-<n>
    const [root, processFolder, exportFolder, file] = relative(spill, liveFiles[0]!).split(sep)
    expect([root, processFolder?.split('-')[0], exportFolder?.slice(0, 7), file?.slice(0, 6)]).toEqual([ROOT, String(live.pid), 'export-', 'shard-'])
    expect(await readdir(join(spill, ROOT))).not.toContain(relative(join(spill, ROOT), killedFiles[0]!).split(sep)[0])

    // The live export goes on to its end; its exit removes its process's folder.
    await live.go()
    expect(await live.exited, live.stderr()).toBe(0)
    expect((await readFile(join(dir, 'live.csv'), 'utf8')).trim().split('\n')).toHaveLength(ROWS + 1)
    expect((await readdir(join(spill, ROOT))).filter((name) => name.startsWith(`${live.pid}-`))).toEqual([])
  }, 60_000)

  it("a process that exits mid-export (process.exit, as the CLI does on a second Ctrl-C) removes its process's spill folder", async () => {
    const dir = await tempDir()
    const spill = await tempDir()
    const exiting = await startExport(spill, dir, 'exiting', 'exit')
    await waitForSpill(spill)
    await exiting.go()
    expect(await exiting.exited).toBe(3)
    expect(await filesUnder(spill)).toEqual([])
    expect(await readdir(join(spill, ROOT))).toEqual([])
  }, 30_000)

  it('refuses a spill parent folder that others can write to (they could swap the files), naming it', async () => {
    const spill = await tempDir()
    await mkdir(join(spill, ROOT))
    await chmod(join(spill, ROOT), 0o777)
    const error = await exportStream({
      source: postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, shards: 3, bufferBytes: 16 * 1024, tempDir: spill }),
      format: csv(),
      // (A sink slow enough that the later shards read ahead and must spill, however loaded the machine:
      // at 2 ms a chunk a loaded run once consumed them before they had to.)
      sink: collector(20),
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SOURCE', stage: 'source' })
    expect((error as Error).message).toMatch(
      new RegExp(`^Cannot keep shard output in ${join(spill, ROOT)}: it belongs to user \\d+ with mode 777, not to user \\d+ alone`),
    )
    expect(await readdir(join(spill, ROOT))).toEqual([])
  })
})
