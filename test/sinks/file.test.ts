import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, expect, it } from 'vitest'
import { fileSink } from '../../src/index.js'
import { listDir, tempDir } from '../helpers.js'

describe('fileSink', () => {
  it('works alone as the last stage of a pipeline', async () => {
    const dir = await tempDir()
    const sink = fileSink({ path: join(dir, 'a.txt') })
    await pipeline(Readable.from([Buffer.from('hello '), Buffer.from('world')]), sink)
    expect(await readFile(join(dir, 'a.txt'), 'utf8')).toBe('hello world')
    expect(sink.location).toEqual({ path: join(dir, 'a.txt') })
  })

  it('creates an empty file for empty input', async () => {
    const dir = await tempDir()
    await pipeline(Readable.from([]), fileSink({ path: join(dir, 'empty') }))
    expect(await readFile(join(dir, 'empty'), 'utf8')).toBe('')
    expect(await listDir(dir)).toEqual(['empty'])
  })

  it('creates nothing when destroyed before any byte', async () => {
    const dir = await tempDir()
    const sink = fileSink({ path: join(dir, 'never') })
    sink.destroy()
    await new Promise((r) => sink.once('close', r))
    expect(await listDir(dir)).toEqual([])
    expect(sink.location).toBeUndefined()
  })

  it('removes its temporary file when destroyed midway', async () => {
    const dir = await tempDir()
    const sink = fileSink({ path: join(dir, 'half') })
    await new Promise<void>((resolve, reject) => sink.write(Buffer.alloc(1000), (e) => (e ? reject(e) : resolve())))
    expect((await listDir(dir))[0]).toMatch(/^half\.partial-[0-9a-f]{12}$/)
    sink.on('error', () => {})
    sink.destroy(new Error('stop'))
    await new Promise((r) => sink.once('close', r))
    expect(await listDir(dir)).toEqual([])
  })

  it('validates its path', () => {
    expect(() => fileSink({ path: '' })).toThrow('Expected `path` to be a non-empty string, got `""` (string)')
  })
})
