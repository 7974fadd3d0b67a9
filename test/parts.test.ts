// The part model's commit rule, tried as a hostile user would, on files and on the S3 test server:
// a failed re-export never touches the committed export; a lost reply to the manifest write is
// recognised; a failing delete does not stop the clean-up; two exports never share a manifest.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { csv, exportStream, fileSink, fromIterable, jsonl, postgresSource, s3Sink, type ExportError, type Manifest } from '../src/index.js'
import { databaseUrl } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

let s3: TestS3
beforeAll(async () => {
  s3 = await startS3()
})
afterAll(() => s3.close())

/**
 * Rows 1..count; with `failAt`, the source fails when that row is due (a dead connection, say),
 * after a pause in which the parts before it land.
 */
async function* rows(count: number, failAt?: number) {
  for (let id = 1; id <= count; id++) {
    if (id === failAt) {
      await new Promise((resolve) => setTimeout(resolve, 300))
      throw new Error('connection lost')
    }
    yield { id, note: `row ${id}` }
  }
}

async function listed(prefix: string): Promise<Map<string, string>> {
  const page = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))
  const objects = new Map<string, string>()
  for (const { Key } of page.Contents ?? []) {
    const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key }))
    objects.set(Key!, await object.Body!.transformToString())
  }
  return objects
}

async function files(dir: string): Promise<Map<string, string>> {
  const names = (await readdir(dir)).sort()
  return new Map(await Promise.all(names.map(async (name) => [name, await readFile(join(dir, name), 'utf8')] as const)))
}

describe('a committed split export is touched only by a committed one', () => {
  it('files: a re-export that fails at row 25 leaves the previous parts and manifest byte-identical', async () => {
    const dir = await tempDir()
    const path = join(dir, 'report.csv')
    const first = await exportStream({ source: rows(30), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    expect(first.parts).toHaveLength(3)
    const before = await files(dir)
    expect(before.size).toBe(4)

    const error = await exportStream({ source: rows(30, 25), format: csv(), sink: fileSink({ path }), split: { rows: 10 } }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SOURCE' })
    expect(await files(dir)).toEqual(before)
  })

  it('S3: a re-export that fails at row 25 leaves the previous parts and manifest byte-identical', async () => {
    const key = 'rerun/report.csv'
    const sink = () => s3Sink({ client: s3.client, bucket: s3.bucket, key })
    await exportStream({ source: rows(30), format: csv(), sink: sink(), split: { rows: 10 } })
    const before = await listed('rerun/')
    expect(before.size).toBe(4)

    const error = await exportStream({ source: rows(30, 25), format: csv(), sink: sink(), split: { rows: 10 } }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SOURCE' })
    expect(await listed('rerun/')).toEqual(before)
  })

  it('a successful re-export replaces the previous one whole: its unlisted parts are removed after the commit', async () => {
    const dir = await tempDir()
    const path = join(dir, 'report.csv')
    await exportStream({ source: rows(30), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    const second = await exportStream({ source: rows(15), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    const manifest = JSON.parse(await readFile(join(dir, 'report.manifest.json'), 'utf8')) as Manifest<{ path: string }>
    expect(manifest).toEqual(second.manifest)
    expect([...(await files(dir)).keys()]).toEqual([...manifest.parts.map((p) => p.name), 'report.manifest.json'].sort())
    expect(manifest.rows).toBe(15)
  })
})

describe('the manifest lists only parts the store has', () => {
  // File parts are written straight to their names and synced together before the manifest: a
  // part that went missing meanwhile (a clean-up job, an operator) must fail the commit.
  it('files: a landed part removed before the commit (split, partitioned): ERR_SINK naming it, no manifest, nothing of the run left', async () => {
    for (const partitioned of [false, true]) {
      const dir = await tempDir()
      async function* rows() {
        for (let id = 0; id < 10; id++) yield { id, customer: 'a' }
        // The first part is full (split) or its partition finished (maxOpen 1): it lands, and goes.
        yield { id: 10, customer: 'b' }
        let first: string | undefined
        while (!(first = (await readdir(dir)).find((name) => /-00001\.csv$/.test(name)))) await new Promise((resolve) => setTimeout(resolve, 5))
        await rm(join(dir, first))
        yield { id: 11, customer: 'b' }
      }
      const error = await exportStream({
        source: fromIterable(rows()),
        format: csv(),
        sink: fileSink({ path: join(dir, partitioned ? '{customer}.csv' : 'orders.csv') }),
        ...(partitioned ? { partitionBy: { by: 'customer', maxOpen: 1 } } : { split: { rows: 10 } }),
      }).catch((e: unknown) => e as ExportError)
      expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringMatching(/-00001\.csv could not be made durable.*ENOENT/) })
      expect(await readdir(dir)).toEqual([])
    }
  })
})

// strace shows what reaches the disk: the real CLI's system calls. CI (.ci/run) installs strace.
const strace = existsSync('/usr/bin/strace') || process.env.CI === 'true'
describe.skipIf(!strace)(`durable before the manifest${strace ? '' : ' (skipped: strace is not installed)'}`, () => {
  it('the CLI under strace, split and partitioned: every part is fdatasynced before the manifest is renamed into place', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'in.jsonl'), Array.from({ length: 60 }, (_, id) => JSON.stringify({ id, customer: `c${id % 3}` }) + '\n').join(''))
    const cli = new URL('../dist/cli.js', import.meta.url).pathname
    for (const [out, args] of [
      ['split/orders.csv.gz', ['--split-rows', '10']],
      ['partitioned/{customer}.csv.gz', ['--partition-by', 'customer', '--split-rows', '10']],
    ] as const) {
      const trace = join(dir, 'trace')
      const argv = ['-f', '-qq', '-y', '-e', 'trace=fdatasync,rename,renameat,renameat2', '-o', trace, process.execPath, cli]
      await promisify(execFile)('strace', [...argv, '--from', join(dir, 'in.jsonl'), '--to', join(dir, out), ...args, '--json'])
      const calls = (await readFile(trace, 'utf8')).split('\n')
      const manifest = calls.findIndex((line) => /rename\w*\(.*\.manifest\.json\.partial-.*\.manifest\.json"/.test(line))
      const folder = join(dir, out.split('/')[0]!)
      const parts = (await readdir(folder, { recursive: true })).filter((name) => /-\d{5}\.csv\.gz$/.test(name))
      expect(parts).toHaveLength(6)
      expect(manifest).toBeGreaterThan(0)
      for (const part of parts)
        expect(calls.slice(0, manifest).some((line) => line.includes(`fdatasync(`) && line.includes(`<${join(folder, part)}>`))).toBe(true)
    }
  })
})

describe('a stopped run opens no part', () => {
  it('aborts while batches of 5000 rows are cut into parts of 100: nothing of the run is left, ever', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
    const poolErrors: Error[] = [] // e.g. a late Execute on a closed cursor, answered to an idle client
    pool.on('error', (error) => void poolErrors.push(error))
    try {
      const left: string[] = []
      for (let i = 0; i < 12; i++) {
        const dir = await tempDir()
        const controller = new AbortController()
        const timer = setTimeout(() => controller.abort(new Error('stop')), 15 + i * 9)
        const result = await exportStream({
          source: postgresSource({ pool, text: 'select i as id, md5(i::text) as note from generate_series(1, 60000) i', batchSize: 5000 }),
          format: csv(),
          sink: fileSink({ path: join(dir, 'orders.csv') }),
          split: { rows: 100 },
          signal: controller.signal,
        }).catch((e: unknown) => e)
        clearTimeout(timer)
        if (!(result instanceof Error)) continue // finished before the abort
        await new Promise((resolve) => setTimeout(resolve, 200)) // a part flushing late would land by now
        left.push(...(await readdir(dir)))
      }
      expect(left).toEqual([])
      expect(poolErrors).toEqual([])
    } finally {
      await pool.end()
    }
  })
})

describe('a manifest only ever removes parts of its own export', () => {
  it('files beside the export that a manifest lists but that are not named as its parts survive the next commit', async () => {
    const dir = await tempDir()
    const path = join(dir, 'report.csv')
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    // A manifest edited by hand (or by a tool of the user's) that lists the user's own files.
    const manifestFile = join(dir, 'report.manifest.json')
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as Manifest<{ path: string }>
    const foreign = ['report-summary.csv', 'report-2026.csv', '../outside-00001.csv']
    for (const name of foreign.slice(0, 2)) await writeFile(join(dir, name), 'mine\n')
    manifest.parts.push(...foreign.map((name) => ({ ...manifest.parts[0]!, name, location: { path: join(dir, name) } })))
    await writeFile(manifestFile, JSON.stringify(manifest))
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    for (const name of foreign.slice(0, 2)) expect(await readFile(join(dir, name), 'utf8')).toBe('mine\n')
  })

  it('a date-stamped file is no part of an export whose manifest names it: only an old manifest (no name) has run-less parts', async () => {
    const dir = await tempDir()
    const path = join(dir, 'orders.csv')
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    const manifestFile = join(dir, 'orders.manifest.json')
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as Manifest<{ path: string }>
    await writeFile(join(dir, 'orders-20260101.csv'), 'mine\n')
    manifest.parts.push({ ...manifest.parts[0]!, name: 'orders-20260101.csv' })
    await writeFile(manifestFile, JSON.stringify(manifest))
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    expect(await readFile(join(dir, 'orders-20260101.csv'), 'utf8')).toBe('mine\n')
  })

  it('a manifest with a part that is not one (null) is refused before any output, the export committed there untouched', async () => {
    const dir = await tempDir()
    const path = join(dir, 'orders.csv')
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path }), split: { rows: 10 } })
    const manifestFile = join(dir, 'orders.manifest.json')
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { parts: unknown[] }
    manifest.parts.push(null)
    await writeFile(manifestFile, JSON.stringify(manifest))
    const before = await files(dir)
    const error = await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path }), split: { rows: 10 } }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringContaining('is not a manifest') })
    expect(await files(dir)).toEqual(before)
  })
})

describe('the manifest write is the commit point', () => {
  it('S3: a manifest stored whose reply is lost on every try resolves, with every part it lists in place', async () => {
    const key = 'lost-reply/report.csv'
    s3.inject({ op: 'PutObject', key: 'lost-reply/report.manifest.json', action: 'pass', dropResponse: true })
    try {
      const result = await exportStream({ source: rows(30), format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key }), split: { rows: 10 } })
      const objects = await listed('lost-reply/')
      const manifest = JSON.parse(objects.get('lost-reply/report.manifest.json')!) as Manifest<{ key: string }>
      expect(manifest).toEqual(result.manifest)
      for (const part of manifest.parts) expect(objects.has(part.location.key)).toBe(true)
      expect(objects.size).toBe(manifest.parts.length + 1)
    } finally {
      s3.clearFaults()
    }
  })
})

describe('when whether the manifest landed cannot be told', () => {
  it('S3: its reply lost and the read-back failing too: ERR_SINK, every part kept and named, never a manifest over deleted parts', async () => {
    const key = 'unknown/report.csv'
    const manifestKey = 'unknown/report.manifest.json'
    // Once the manifest is being written, reading it fails as well (the store is in trouble).
    s3.inject({
      op: 'PutObject',
      key: manifestKey,
      action: 'pass',
      dropResponse: true,
      onRequest: () => s3.inject({ op: 'GetObject', key: manifestKey, action: 503 }),
    })
    try {
      const error = (await exportStream({
        source: rows(30),
        format: csv(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key }),
        split: { rows: 10 },
      }).catch((e: unknown) => e)) as ExportError
      expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringContaining('unknown') })
      s3.clearFaults()
      const objects = await listed('unknown/')
      const manifest = JSON.parse(objects.get(manifestKey)!) as Manifest<{ key: string }>
      expect(error.leftBehind?.sort()).toEqual(manifest.parts.map((part) => part.location.key).sort())
      for (const part of manifest.parts) expect(objects.has(part.location.key)).toBe(true)
    } finally {
      s3.clearFaults()
    }
  })
})

describe('clean-up', () => {
  it('S3: a part whose delete keeps failing is named in leftBehind; every other part is removed', async () => {
    const prefix = 'stuck-delete/'
    // The delete of part 2 fails every time (a 503 storm on one key).
    let stuck: string | undefined
    s3.inject({ op: 'DeleteObject', action: 503, match: (key) => key.endsWith('-00002.csv') && (stuck = key) === key })
    try {
      const error = (await exportStream({
        source: rows(50, 45),
        format: csv(),
        sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: `${prefix}report.csv` }),
        split: { rows: 10 },
      }).catch((e: unknown) => e)) as ExportError & { leftBehind?: string[] }
      expect(error).toMatchObject({ code: 'ERR_SOURCE' })
      expect(stuck).toBeDefined()
      expect(error.leftBehind).toEqual([stuck])
      expect([...(await listed(prefix)).keys()]).toEqual([stuck])
    } finally {
      s3.clearFaults()
    }
  })
})

describe('two exports never share a manifest', () => {
  it('report.2026-01.csv and report.2026-02.csv keep their whole names: two manifests, both intact', async () => {
    const dir = await tempDir()
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path: join(dir, 'report.2026-01.csv') }), split: { rows: 10 } })
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path: join(dir, 'report.2026-02.csv') }), split: { rows: 10 } })
    for (const month of ['2026-01', '2026-02']) {
      const manifest = JSON.parse(await readFile(join(dir, `report.${month}.manifest.json`), 'utf8')) as Manifest<{ path: string }>
      for (const part of manifest.parts) expect(part.name).toMatch(new RegExp(`^report\\.${month}-.*\\.csv$`))
      expect((await readdir(dir)).filter((name) => manifest.parts.some((p) => p.name === name))).toHaveLength(2)
    }
    expect(await readdir(dir)).toHaveLength(6)
  })

  it('orders.csv then orders.jsonl: the second is refused before any output, the first stays whole', async () => {
    const dir = await tempDir()
    await exportStream({ source: rows(20), format: csv(), sink: fileSink({ path: join(dir, 'orders.csv') }), split: { rows: 10 } })
    const before = await files(dir)
    const error = await exportStream({ source: rows(20), format: jsonl(), sink: fileSink({ path: join(dir, 'orders.jsonl') }), split: { rows: 10 } }).catch(
      (e: unknown) => e,
    )
    expect(error).toMatchObject({ code: 'ERR_SINK', message: expect.stringContaining('orders.manifest.json') })
    expect(await files(dir)).toEqual(before)
  })
})
