import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, expect, it } from 'vitest'
import { exportStream, fileSink, jsonl, type ExportError } from '../../src/index.js'
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

describe('fileSink: the rename is the commit point', () => {
  // An abort lands at a different moment of the sink's finish in each run (while it fsyncs, closes,
  // renames, or just after). Whatever the moment, the result must agree with the disk: resolved
  // means the new file is in place, ERR_ABORTED means the old file is untouched; never a temp file.
  it('an abort at any moment of the finish: the result always agrees with the destination', async () => {
    const dir = await tempDir()
    const path = join(dir, 'out.jsonl')
    const outcomes = { resolved: 0, aborted: 0 }
    // 24 runs with a growing delay; then, while no run has resolved yet (a busy disk makes fsync
    // slow), the delay doubles until one does.
    let turnsAfter = 24 * 24 * 4
    for (let run = 0; run < 24 || (outcomes.resolved === 0 && run < 48); run++) {
      const delay = run < 24 ? run * run * 4 : (turnsAfter *= 2)
      await writeFile(path, 'old\n')
      const controller = new AbortController()
      const sink = fileSink({ path })
      const final = sink._final.bind(sink)
      sink._final = (callback) => {
        // 0: at once; then after a growing number of event-loop turns (fsync, close and rename each take some).
        if (run === 0) controller.abort(new Error('now'))
        else {
          let turns = delay
          const spin = () => (--turns <= 0 ? controller.abort(new Error('late')) : setImmediate(spin))
          setImmediate(spin)
        }
        final(callback)
      }
      const result = await exportStream({ source: [{ run }], format: jsonl(), sink, signal: controller.signal }).then(
        (r) => r,
        (e: ExportError) => e,
      )
      const content = await readFile(path, 'utf8')
      if (result instanceof Error) {
        expect(result.code).toBe('ERR_ABORTED')
        expect(content).toBe('old\n')
        outcomes.aborted++
      } else {
        expect(result.location).toEqual({ path })
        expect(content).toBe(`{"run":${run}}\n`)
        outcomes.resolved++
      }
      expect(await listDir(dir)).toEqual(['out.jsonl'])
    }
    // Both sides of the commit point were reached.
    expect(outcomes.aborted).toBeGreaterThan(0)
    expect(outcomes.resolved).toBeGreaterThan(0)
  })
})
