// overwrite: false on a file system without hard links (exFAT, FAT, some network and FUSE
// mounts): link() answers EPERM there, and the commit is an exclusive copy instead. A real exFAT
// image mounted through FUSE; CI (.ci/run) installs exfat-fuse and exfatprogs.
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { csv, exportStream, fileSink, fromIterable } from '../../src/index.js'

const run = promisify(execFile)
let dir = ''
let mounted = ''
let loop = ''
let why = ''

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'se-exfat-'))
  const image = join(dir, 'exfat.img')
  try {
    await run('truncate', ['-s', '16M', image])
    await run('mkfs.exfat', [image])
    loop = (await run('losetup', ['-f', '--show', image])).stdout.trim()
    mounted = join(dir, 'mnt')
    await run('mkdir', [mounted])
    await run('mount.exfat-fuse', [loop, mounted])
  } catch (error) {
    why = (error as Error).message.split('\n')[0]!
    mounted = ''
  }
  // CI installs the tools and runs as root: there a mount that fails is a failure, not a skip.
  if (!mounted && process.env.CI === 'true') throw new Error(`Cannot mount an exFAT image: ${why}`)
})
afterAll(async () => {
  if (mounted) await run('umount', [mounted]).catch(() => {})
  if (loop) await run('losetup', ['-d', loop]).catch(() => {})
  await rm(dir, { recursive: true, force: true })
})

const small = () => fromIterable(statements(100))

describe('overwrite: false without hard links', () => {
  it('lands by an exclusive copy; a file already there (or appearing meanwhile) is kept and refused', async (context) => {
    if (!mounted) return context.skip(`no exFAT mount here: ${why}`)
    const path = join(mounted, 'out.csv')
    const result = await exportStream({ source: small(), format: csv(), sink: fileSink({ path, overwrite: false }) })
    expect(result.location).toEqual({ path })
    const model = join(dir, 'model.csv')
    await exportStream({ source: small(), format: csv(), sink: fileSink({ path: model }) })
    expect(await readFile(path)).toEqual(await readFile(model))

    const late = join(mounted, 'late.csv')
    async function* rows() {
      yield* statements(50)
      await writeFile(late, 'written meanwhile')
      yield* statements(50)
    }
    const error = await exportStream({ source: fromIterable(rows()), format: csv(), sink: fileSink({ path: late, overwrite: false }) }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PRECONDITION' })
    expect(await readFile(late, 'utf8')).toBe('written meanwhile')
    expect((await readdir(mounted)).sort()).toEqual(['late.csv', 'out.csv'])
  })
})
