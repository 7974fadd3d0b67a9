import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3'
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import {
  csv,
  csvSource,
  exportKey,
  exportStream,
  fileSink,
  fromIterable,
  jsonl,
  jsonlSource,
  parquet,
  s3Sink,
  zstd,
  type ExportError,
  type Manifest,
} from '../../src/index.js'
import { ResumableUpload, type ExportCheckpoint } from '../../src/sinks/s3/resumable.js'
import { jsonArrayStart } from '../../src/sinks/s3/shards.js'
import { decodeZstd } from '../../src/core/zstd-frames.js'
import { startS3, type TestS3 } from '../fixtures/s3-server.js'
import { collector, expectSameBytes, formatRows, listDir, noise, tempDir } from '../helpers.js'

const MiB = 1024 * 1024
const rows = (count: number) => Array.from(statements(count))
const csvOf = async (count: number) => Buffer.from(await formatRows(csv(), rows(count)))
const collect = async (source: AsyncIterable<unknown>) => {
  const all: unknown[] = []
  for await (const row of source) all.push(row)
  return all
}
/** What the `zstd` command makes of a file: its bytes decompressed (it checks the frame's checksum). */
const unzstd = (path: string) => execFileSync('zstd', ['-dc', path], { maxBuffer: 256 * MiB })

describe('zstd()', () => {
  it('writes frames the zstd command reads, with their content checksum; empty input too', async () => {
    const dir = await tempDir()
    for (const input of [Buffer.alloc(0), await csvOf(20_000)]) {
      const sink = collector()
      await pipeline(Readable.from([input]), zstd(), sink)
      const path = join(dir, 'x.zst')
      await writeFile(path, sink.buffer())
      expect(unzstd(path).equals(input)).toBe(true)
      if (input.length > 0) expect(execFileSync('zstd', ['-lv', path]).toString()).toMatch(/Check: XXH64/)
    }
  })

  it('takes its level: 19 is smaller than 1 on the same rows; a level outside 1-22 or an unknown key is refused', async () => {
    const input = await csvOf(20_000)
    const size = async (level: number) => {
      const sink = collector()
      await pipeline(Readable.from([input]), zstd({ level }), sink)
      expect(zstdDecompressSync(sink.buffer()).equals(input)).toBe(true)
      return sink.buffer().length
    }
    expect(await size(19)).toBeLessThan((await size(1)) * 0.9)
    for (const level of [0, 23, 2.5]) expect(() => zstd({ level })).toThrow(/`level` to be an integer from 1 to 22/)
    expect(() => zstd({ levl: 3 } as never)).toThrow(/Unknown option `levl`.*did you mean `level`/)
  })
})

describe("exportStream({ compression: 'zstd' })", () => {
  it('writes a .zst file that zstd -d turns back into the CSV; bytes count what was stored', async () => {
    const dir = await tempDir()
    const path = join(dir, 'orders.csv.zst')
    const result = await exportStream({ source: fromIterable(rows(30_000)), format: csv(), compression: 'zstd', sink: fileSink({ path }) })
    const expected = await csvOf(30_000)
    expectSameBytes(unzstd(path), expected)
    expect(result.bytes).toBe((await readFile(path)).length)
    expect(result.uncompressedBytes).toBe(expected.length)
    expect(result.bytes).toBeLessThan(expected.length / 3)
  })

  it('{ type, level } options; every mistake refused before any output', async () => {
    const dir = await tempDir()
    const path = join(dir, 'a.jsonl.zst')
    await exportStream({ source: fromIterable(rows(100)), format: jsonl(), compression: { type: 'zstd', level: 12 }, sink: fileSink({ path }) })
    expect(unzstd(path).toString()).toBe(await formatRows(jsonl(), rows(100)))
    const refused = async (options: Record<string, unknown>, message: RegExp) => {
      const error = (await exportStream({ source: fromIterable(rows(5)), format: csv(), sink: fileSink({ path: join(dir, 'b.csv') }), ...options }).catch(
        (e: unknown) => e,
      )) as ExportError
      expect(error.code).toBe('ERR_INVALID_OPTION')
      expect(error.message).toMatch(message)
    }
    await refused({ compression: 'brotli' }, /`compression` to be 'gzip' or 'zstd', got `"brotli"`/)
    await refused({ compression: { type: 'zstd', levl: 3 } }, /Unknown option `levl`.*did you mean `level`/)
    await refused({ compression: { type: 'zstd', level: 40 } }, /`level` to be an integer from 1 to 22/)
    await refused({ compression: 'zstd', gzip: true }, /`compression` to be unset when `gzip` is set/)
    await refused({ compression: 'zstd', format: parquet() }, /`compression` to be off for a format that compresses its own output/)
    await refused({ compresion: 'zstd' }, /Unknown option `compresion`.*did you mean `compression`/)
    expect(await listDir(dir)).toEqual(['a.jsonl.zst'])
  })

  it("'gzip' is gzip: true", async () => {
    const sink = collector()
    await exportStream({ source: fromIterable(rows(10)), format: csv(), compression: 'gzip', sink })
    expect(sink.buffer().subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]))
  })

  it('split: every part a whole .zst CSV with its header; the manifest says zstd', async () => {
    const dir = await tempDir()
    const result = await exportStream({
      source: fromIterable(rows(2500)),
      format: csv(),
      compression: 'zstd',
      sink: fileSink({ path: join(dir, 'orders.csv.zst') }),
      split: { rows: 1000 },
    })
    expect(result.parts!.map((part) => part.name)).toEqual([1, 2, 3].map((n) => expect.stringMatching(new RegExp(`^orders-[0-9a-f]{8}-0000${n}\\.csv\\.zst$`))))
    const manifest = JSON.parse(await readFile(join(dir, 'orders.manifest.json'), 'utf8')) as Manifest
    expect(manifest).toMatchObject({ compression: 'zstd', format: 'csv', rows: 2500 })
    const all = rows(2500)
    for (const [i, part] of result.parts!.entries()) {
      expectSameBytes(unzstd((part.location as { path: string }).path), Buffer.from(await formatRows(csv(), all.slice(i * 1000, (i + 1) * 1000))))
    }
  })
})

describe('zstd in S3', () => {
  let s3: TestS3
  beforeAll(async () => {
    s3 = await startS3()
  })
  afterAll(() => s3.close())
  const getObject = async (key: string) => {
    const result = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
    return Buffer.from(await result.Body!.transformToByteArray())
  }

  it('s3Sink stores application/zstd under the key exportKey gives', async () => {
    const key = exportKey({ jobId: '7', format: csv(), compression: 'zstd' })
    expect(key).toBe('exports/7.csv.zst')
    await exportStream({ source: fromIterable(rows(1000)), format: csv(), compression: 'zstd', sink: s3Sink({ client: s3.client, bucket: s3.bucket, key }) })
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }))
    expect(head.ContentType).toBe('application/zstd')
    expect(head.ContentEncoding).toBeUndefined()
    expectSameBytes(Buffer.from(zstdDecompressSync(await getObject(key))), await csvOf(1000))
  })

  it('a resumable upload in segments: one frame per part, the object is the whole CSV to zstd -d', async () => {
    const key = 'resume/zstd.csv.zst'
    const count = 90_000 // 128 bytes of hash a row that zstd cannot shrink: three parts of 5 MiB
    const source = () => fromIterable(rows(count))
    const transform = (row: object) => ({ ...row, noise: noise(Number((row as { id: number }).id), 128) })
    const saved: ExportCheckpoint[] = []
    const upload = new ResumableUpload({
      client: s3.client,
      bucket: s3.bucket,
      key,
      contentType: 'application/zstd',
      partSize: () => 5 * MiB,
      onCheckpoint: async (checkpoint) => void saved.push(checkpoint),
    })
    await upload.open()
    await exportStream({ source: source(), transform, format: csv(), compression: 'zstd', sink: upload })
    expect(saved.at(-1)!.parts.length).toBeGreaterThanOrEqual(2)
    const dir = await tempDir()
    await writeFile(join(dir, 'o.csv.zst'), await getObject(key))
    expectSameBytes(unzstd(join(dir, 'o.csv.zst')), Buffer.from(await formatRows(csv(), rows(count).map(transform))))
  })
})

describe('a sharded JSON array in zstd', () => {
  it("the parent mends the first piece's start inside its frames: `,` becomes `[`, an empty array `[]`", () => {
    const mend = jsonArrayStart('zstd')
    const piece = Buffer.concat([zstdCompressSync(Buffer.from(',{"id":1}\n')), zstdCompressSync(Buffer.from(',{"id":2}\n'))])
    expect(Buffer.from(zstdDecompressSync(mend(piece)!)).toString()).toBe('[{"id":1}\n,{"id":2}\n')
    expect(Buffer.from(zstdDecompressSync(mend(zstdCompressSync(Buffer.from('\n]\n')))!)).toString()).toBe('[]\n')
    expect(mend(zstdCompressSync(Buffer.alloc(0)))).toBeUndefined()
  })
})

describe('zstd input', () => {
  /** Decodes `bytes` fed in chunks of `size`. */
  const decode = async (bytes: Buffer, size: number) => {
    const chunks = (function* () {
      for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size)
    })()
    const out: Buffer[] = []
    for await (const chunk of decodeZstd(Readable.from(chunks))) out.push(chunk)
    return Buffer.concat(out)
  }

  it('reads every frame of a file, as the zstd command does (Node 22 stops after the first)', async () => {
    const dir = await tempDir()
    const text = await csvOf(5000)
    const inputs = [text.subarray(0, 100_000), randomBytes(300_000), Buffer.alloc(400_000, 'x'), Buffer.alloc(0), text]
    const frames: Buffer[] = []
    for (const [i, input] of inputs.entries()) {
      const path = join(dir, `f${i}`)
      await writeFile(path, input)
      // The zstd command's frames: with and without checksum, content size and several block types.
      execFileSync('zstd', ['-q', i % 2 ? '--no-check' : '--check', `-${1 + i * 4}`, '-f', path, '-o', `${path}.zst`])
      frames.push(await readFile(`${path}.zst`))
      if (i === 1) frames.push(Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0]), Buffer.from('abc')])) // a skippable frame
    }
    frames.push(zstdCompressSync(text.subarray(0, 70_000)))
    const file = Buffer.concat(frames)
    await writeFile(join(dir, 'all.zst'), file)
    const expected = unzstd(join(dir, 'all.zst'))
    expect(expected.length).toBe(inputs.reduce((sum, input) => sum + input.length, 70_000))
    for (const size of [13, 65_536, file.length]) expectSameBytes(await decode(file, size), expected)
    // A byte at a time through a text frame, the skippable one and the empty one: every header split at every byte.
    expectSameBytes(await decode(Buffer.concat([frames[0]!, frames[2]!, frames[4]!]), 1), inputs[0]!)
  })

  it('a truncated input is ERR_SOURCE, never a short read', async () => {
    const file = Buffer.concat([zstdCompressSync(Buffer.from('a\n')), zstdCompressSync(await csvOf(1000))])
    for (const cut of [file.length - 1, file.length - 30, 20]) {
      const error = (await decode(file.subarray(0, cut), 4096).catch((e: unknown) => e)) as ExportError
      expect(error).toMatchObject({ code: 'ERR_SOURCE' })
    }
  })

  it('csvSource and jsonlSource read .zst files as they read .gz, one that begins with a skippable frame (pzstd) too', async () => {
    const dir = await tempDir()
    const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4])
    await writeFile(join(dir, 'skip.csv.zst'), Buffer.concat([skippable, zstdCompressSync(Buffer.from('id\n7\n'))]))
    expect(await collect(csvSource({ path: join(dir, 'skip.csv.zst') }))).toEqual([{ id: '7' }])
    await writeFile(join(dir, 'in.csv.zst'), zstdCompressSync(Buffer.from('id,name\n1,a\n2,"b, c"\n')))
    await writeFile(join(dir, 'in.jsonl.zst'), zstdCompressSync(Buffer.from('{"id":1}\n{"id":2}\n')))
    const csvRows = await collect(csvSource({ path: join(dir, 'in.csv.zst') }))
    expect(csvRows).toEqual([
      { id: '1', name: 'a' },
      { id: '2', name: 'b, c' },
    ])
    expect(await collect(jsonlSource({ path: join(dir, 'in.jsonl.zst') }))).toEqual([{ id: 1 }, { id: 2 }])
  })
})

describe('the CLI', () => {
  const cli = new URL('../../dist/cli.js', import.meta.url).pathname
  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [cli, ...args], (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr })),
    )

  it('--to x.csv.zst (or --zstd) writes zstd, from a .zst input too; a contradiction is exit 2 before any output', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'in.csv.zst'), zstdCompressSync(Buffer.from('id,name\n1,a\n2,b\n')))
    const named = await run(['--from', join(dir, 'in.csv.zst'), '--to', join(dir, 'out.jsonl.zst'), '--quiet'])
    expect(named).toMatchObject({ code: 0 })
    expect(unzstd(join(dir, 'out.jsonl.zst')).toString()).toBe('{"id":"1","name":"a"}\n{"id":"2","name":"b"}\n')
    const piped = await new Promise<Buffer>((resolve) =>
      execFile(process.execPath, [cli, '--from', join(dir, 'in.csv.zst'), '--zstd', '--to', '-', '--quiet'], { encoding: 'buffer' }, (_e, stdout) =>
        resolve(stdout),
      ),
    )
    expect(Buffer.from(zstdDecompressSync(piped)).toString()).toBe('id,name\n1,a\n2,b\n')
    const cases: Array<[string[], string]> = [
      [['--zstd', '--to', join(dir, 'x.csv')], '--zstd contradicts --to'],
      [['--gzip', '--to', join(dir, 'x.csv.zst')], 'the name ends in .zst'],
      [['--gzip', '--zstd', '--to', '-'], 'give --gzip or --zstd, not both'],
      [['--gzip', '--to', join(dir, 'x.zst')], 'the name ends in .zst'],
      [['--zstd', '--to', join(dir, 'x.gz')], 'the name ends in .gz'],
      [['--to', join(dir, 'x.parquet.zst')], 'Parquet compresses itself; drop --zstd (or the .zst)'],
    ]
    for (const [args, message] of cases) {
      const refused = await run(['--from', join(dir, 'in.csv.zst'), ...args])
      expect(refused.code).toBe(2)
      expect(refused.stderr).toContain(message)
    }
    // A bare .zst: zstd, of the default format.
    expect(await run(['--from', join(dir, 'in.csv.zst'), '--to', join(dir, 'bare.zst'), '--quiet'])).toMatchObject({ code: 0 })
    expect(unzstd(join(dir, 'bare.zst')).toString()).toBe('id,name\n1,a\n2,b\n')
    expect(await listDir(dir)).toEqual(['bare.zst', 'in.csv.zst', 'out.jsonl.zst'])
  })
})
