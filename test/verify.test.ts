// verifyExport() and `stream-export verify`: every byte read back and compared with what the export
// recorded; one flipped byte in any part is found and named, a missing part too.
import { execFile } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../examples/statements.mjs'
import { csv, exportStream, fileSink, fromIterable, jsonl, s3Sink, verifyExport, type Manifest } from '../src/index.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

const cli = new URL('../dist/cli.js', import.meta.url).pathname
const runCli = (args: string[], env: Record<string, string> = {}) =>
  promisify(execFile)(process.execPath, [cli, ...args], { env: { ...process.env, ...env } }).then(
    ({ stdout }) => ({ code: 0, stdout }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  )

let s3: TestS3
beforeAll(async () => {
  s3 = await startS3()
})
afterAll(() => s3.close())
const s3Env = () => ({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' })

const flip = (bytes: Buffer, at: number) => {
  const copy = Buffer.from(bytes)
  copy[at]! ^= 0x01
  return copy
}
const getBytes = async (key: string) =>
  Buffer.from(await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToByteArray())
const putBytes = (key: string, Body: Buffer) => s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body }))

describe('verifyExport', () => {
  it('a split export on disk: every part as recorded; one flipped byte in any part named, and a missing part', async () => {
    const dir = await tempDir()
    const result = await exportStream({
      source: fromIterable(statements(6000)),
      format: csv(),
      gzip: true,
      split: { rows: 2000 },
      sink: fileSink({ path: join(dir, 'out.csv.gz') }),
    })
    const manifest = join(dir, 'out.manifest.json')
    expect(await verifyExport({ target: manifest })).toMatchObject({ ok: true, objects: [{ ok: true }, { ok: true }, { ok: true }] })
    for (const [n, part] of result.parts!.entries()) {
      const path = join(dir, part.name)
      const bytes = await readFile(path)
      await writeFile(path, flip(bytes, Math.floor(bytes.length / 3)))
      const verified = await verifyExport({ target: manifest })
      expect(verified.ok).toBe(false)
      expect(verified.objects.map((object) => object.ok)).toEqual([0, 1, 2].map((i) => i !== n))
      // (The gzip of the damaged part may not read back either: its rows are then named too.)
      expect(verified.objects[n]!.problems.slice(0, 2)).toEqual([expect.stringMatching(/^sha256: /), expect.stringMatching(/^crc64nvme: /)])
      await writeFile(path, bytes)
    }
    await rm(join(dir, result.parts![1]!.name))
    expect((await verifyExport({ target: manifest })).objects[1]).toMatchObject({ ok: false, problems: ['missing: nothing is stored there'] })
  })

  it('a manifest that does not agree with itself: parts dropped from its list, or a part recorded with nothing to check it by', async () => {
    const dir = await tempDir()
    await exportStream({ source: fromIterable(statements(3000)), format: csv(), split: { rows: 1000 }, sink: fileSink({ path: join(dir, 'all.csv') }) })
    const manifest = JSON.parse(await readFile(join(dir, 'all.manifest.json'), 'utf8')) as Manifest
    const [first, ...rest] = manifest.parts
    await writeFile(join(dir, 'dropped.manifest.json'), JSON.stringify({ ...manifest, parts: rest }))
    const dropped = await verifyExport({ target: join(dir, 'dropped.manifest.json') })
    expect(dropped).toMatchObject({
      ok: false,
      problems: [`rows: the parts hold 2000, the manifest says 3000`, expect.stringMatching(/^bytes: the parts hold \d+, the manifest says \d+$/)],
    })
    expect(dropped.objects.map((o) => o.ok)).toEqual([true, true]) // each part listed is as recorded
    const cliRun = await runCli(['verify', join(dir, 'dropped.manifest.json')])
    expect(cliRun.stdout.split('\n')[0]).toBe(`BAD  ${join(dir, 'dropped.manifest.json')}: ${dropped.problems!.join('; ')}`)
    expect(cliRun.code).toBe(1)

    const { sha256: _, checksum: __, ...bare } = first!
    await writeFile(join(dir, 'bare.manifest.json'), JSON.stringify({ ...manifest, parts: [bare, ...rest] }))
    const unchecked = await verifyExport({ target: join(dir, 'bare.manifest.json') })
    expect(unchecked.ok).toBe(false)
    expect(unchecked.objects[0]).toMatchObject({ ok: false, problems: ['unchecked: the manifest records no sha256 or checksum of it'] })
    expect(await verifyExport({ target: join(dir, 'all.manifest.json') })).toMatchObject({ ok: true })
  })

  it('counts the rows of CSV and JSON Lines parts (gzip, a header or none) against the manifest', async () => {
    const dir = await tempDir()
    for (const [name, format] of [
      ['rows.csv.gz', csv()],
      ['bare.csv', csv({ header: false })],
      ['lines.jsonl.gz', jsonl()],
    ] as const) {
      const gzip = name.endsWith('.gz')
      const result = await exportStream({
        source: fromIterable(statements(2500)),
        format,
        gzip,
        split: { rows: 1000 },
        sink: fileSink({ path: join(dir, name) }),
      })
      const manifest = result.location!.path
      const verified = await verifyExport({ target: manifest })
      expect(verified.objects.map((object) => object.rows)).toEqual([1000, 1000, 500])
      expect(verified.ok).toBe(true)
      // A manifest that says otherwise: the stored rows are counted, not taken from it.
      const text = JSON.parse(await readFile(manifest, 'utf8'))
      text.parts[2].rows = 501
      await writeFile(manifest, JSON.stringify(text))
      expect((await verifyExport({ target: manifest })).objects[2]).toMatchObject({ ok: false, problems: ['rows: 500 stored, 501 recorded'] })
    }
  })

  it('a split export on S3, and one object against its checksum or the one the store keeps', async () => {
    const split = await exportStream({
      source: fromIterable(statements(6000)),
      format: csv(),
      split: { rows: 2500 },
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'v/split.csv' }),
    })
    const target = `s3://${s3.bucket}/v/split.manifest.json`
    expect((await verifyExport({ target, client: s3.client })).ok).toBe(true)
    const key = split.parts![2]!.location.key
    await putBytes(key, flip(await getBytes(key), 7))
    const verified = await verifyExport({ target, client: s3.client })
    expect(verified.objects.map((object) => object.ok)).toEqual([true, true, false])

    const one = await exportStream({
      source: fromIterable(statements(3000)),
      format: csv(),
      sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'v/one.csv' }),
    })
    expect(await verifyExport({ target: { bucket: s3.bucket, key: 'v/one.csv' }, client: s3.client })).toMatchObject({ ok: true })
    // Replaced by other bytes: the store vouches for what it holds now, the export's checksum does not.
    await putBytes('v/one.csv', flip(await getBytes('v/one.csv'), 100))
    expect(await verifyExport({ target: `s3://${s3.bucket}/v/one.csv`, client: s3.client })).toMatchObject({ ok: true })
    const against = await verifyExport({ target: `s3://${s3.bucket}/v/one.csv`, client: s3.client, expected: one.checksum })
    expect(against).toMatchObject({ ok: false, objects: [{ problems: [expect.stringMatching(/^crc64nvme: /)] }] })
  })
})

describe('stream-export verify', () => {
  it('exit 0 when every byte is as recorded, 1 naming what differs, 2 for bad arguments; files and S3', async () => {
    const dir = await tempDir()
    const path = join(dir, 'one.csv')
    const result = await exportStream({ source: fromIterable(statements(1000)), format: csv(), split: { rows: 400 }, sink: fileSink({ path }) })
    const manifest = join(dir, 'one.manifest.json')
    const good = await runCli(['verify', manifest])
    expect(good.code).toBe(0)
    expect(good.stdout.trim().split('\n')).toEqual(result.parts!.map((part) => `ok   ${join(dir, part.name)} (${part.bytes} bytes)`))
    const second = join(dir, result.parts![1]!.name)
    await writeFile(second, flip(await readFile(second), 3))
    const bad = await runCli(['verify', manifest])
    expect(bad.code).toBe(1)
    expect(bad.stdout).toContain(`BAD  ${second}: sha256: `)

    const single = join(dir, 'single.csv')
    const exported = await exportStream({ source: fromIterable(statements(100)), format: csv(), sink: fileSink({ path: single }) })
    expect((await runCli(['verify', single, '--expect', exported.checksum!.value])).code).toBe(0)
    expect((await runCli(['verify', single, '--expect', 'AAAAAAAAAAA='])).code).toBe(1)
    expect((await runCli(['verify', single, '--algorithm', 'md5'])).code).toBe(2)
    expect((await runCli(['verify', single])).code).toBe(2) // a file keeps no checksum: --expect is needed

    await exportStream({ source: fromIterable(statements(100)), format: csv(), sink: s3Sink({ client: s3.client, bucket: s3.bucket, key: 'v/cli.csv' }) })
    const onS3 = await runCli(['verify', `s3://${s3.bucket}/v/cli.csv`, '--endpoint', s3.endpoint, '--json'], s3Env())
    expect(onS3.code).toBe(0)
    expect(JSON.parse(onS3.stdout)).toMatchObject({ ok: true, objects: [{ location: { bucket: s3.bucket, key: 'v/cli.csv' } }] })
  })
})
