// The package as users meet it: `npm pack`, then installed from the tarball into fresh projects
// (ESM, CommonJS, TypeScript under two module resolutions, an esbuild bundle), each run for real.
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { databaseUrl } from './fixtures/postgres.js'

const exec = promisify(execFile)
const repo = new URL('..', import.meta.url).pathname
const bin = (name: string) => join(repo, 'node_modules', '.bin', name)

let work: string
let tarball: string
let project: string
const node = (file: string, cwd = project) => exec(process.execPath, [file], { cwd, env: { ...process.env, DATABASE_URL: databaseUrl() } })

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'stream-export-pack-'))
  // A clean checkout (the tracked files) with this repo's node_modules and the dist/ that
  // `npm test` built from them (pretest): packed as npm packs it, but without building a second
  // time (prepack is `npm run build`: checked below). Packing in the repo could pick up files
  // that are not tracked.
  const clone = join(work, 'clone')
  const { stdout: tracked } = await exec('git', ['ls-files', '-z'], { cwd: repo, maxBuffer: 16 * 1024 * 1024 })
  for (const file of tracked.split('\0').filter(Boolean)) await cp(join(repo, file), join(clone, file), { recursive: true })
  await cp(join(repo, 'dist'), join(clone, 'dist'), { recursive: true })
  await symlink(join(repo, 'node_modules'), join(clone, 'node_modules'))
  const { stdout } = await exec('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: clone, maxBuffer: 16 * 1024 * 1024 })
  const [packed] = JSON.parse(stdout.slice(stdout.search(/^\[\s*\{/m)))
  tarball = join(work, packed.filename)
  project = join(work, 'app')
  await mkdir(project)
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  await exec('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: project })
}, 180_000)
afterAll(() => rm(work, { recursive: true, force: true }))

describe('the packed tarball', () => {
  it('is built by npm pack itself (prepack), so a tarball never ships a stale or missing dist/', async () => {
    const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    expect(pkg.scripts.prepack).toBe('npm run build')
    expect(pkg.scripts.build).toBe('tsup')
  })

  it('ships the build, the docs and the recipes the README links to', async () => {
    const { stdout } = await exec('tar', ['-tzf', tarball])
    const files = stdout.split('\n')
    for (const file of [
      'dist/index.js',
      'dist/index.cjs',
      'dist/index.d.ts',
      'dist/bullmq.js',
      'dist/bullmq.cjs',
      'dist/bullmq.d.cts',
      'dist/lambda.js',
      'dist/lambda.cjs',
      'dist/lambda.d.cts',
      'dist/cli.js',
      'dist/parquet-worker.js',
      'dist/parquet-worker.cjs',
      'docs/errors.md',
      'examples/demo.mjs',
      'README.md',
      'LICENSE',
      'CHANGELOG.md',
    ]) {
      expect(files).toContain(`package/${file}`)
    }
    const readme = await readFile(join(repo, 'README.md'), 'utf8')
    for (const [, link] of readme.matchAll(/\]\(((?:docs|examples)\/[^)#]+)/g)) expect(files).toContain(`package/${link}`)
  })

  it('ESM: the README quick start runs in a fresh folder, and errors of every entry are one ExportError (stream-export/lambda without bullmq)', async () => {
    await writeFile(
      join(project, 'esm.mjs'),
      `import { exportStream, fromIterable, csv, fileSink, ExportError } from 'stream-export'
import { verifyWebhook } from 'stream-export/bullmq'
import { createLambdaExportHandler } from 'stream-export/lambda'
async function* rows() { for (let id = 1; id <= 1000; id++) yield { id, amount: 12345678901234567890n } }
const result = await exportStream({ source: fromIterable(rows()), format: csv({ excel: true }), gzip: true, sink: fileSink({ path: 'exports/statements.csv.gz' }) })
let same = false
try { verifyWebhook({ secret: '', body: '', signature: '', timestamp: '' }) } catch (error) { same = error instanceof ExportError }
try { createLambdaExportHandler({}) } catch (error) { same &&= error instanceof ExportError }
console.log(JSON.stringify({ rows: result.rows, path: result.location.path, same }))
`,
    )
    const { stdout } = await node('esm.mjs')
    expect(JSON.parse(stdout)).toEqual({ rows: 1000, path: 'exports/statements.csv.gz', same: true })
  })

  it(`the installed CLI exports a query on this Node (${process.version}), without a warning`, async () => {
    const cli = join(project, 'node_modules', 'stream-export', 'dist', 'cli.js')
    const query = 'select i as id from generate_series(1, 3) i order by i'
    const { stdout, stderr } = await exec(process.execPath, [cli, '--from', databaseUrl(), '--query', query, '--to', '-', '--format', 'jsonl', '--quiet'], {
      cwd: project,
    })
    expect(stdout).toBe('{"id":1}\n{"id":2}\n{"id":3}\n')
    expect(stderr).toBe('') // no engine or deprecation warning
  })

  it('CommonJS: require() of every entry, one ExportError class', async () => {
    await writeFile(
      join(project, 'cjs.cjs'),
      `const { ExportError, csv } = require('stream-export')
const { verifyWebhook } = require('stream-export/bullmq')
const { createLambdaExportHandler } = require('stream-export/lambda')
let same = false
try { verifyWebhook({ secret: '', body: '', signature: '', timestamp: '' }) } catch (error) { same = error instanceof ExportError }
try { createLambdaExportHandler({}) } catch (error) { same &&= error instanceof ExportError }
console.log(JSON.stringify({ same, csv: typeof csv }))
`,
    )
    const { stdout } = await node('cjs.cjs')
    expect(JSON.parse(stdout)).toEqual({ same: true, csv: 'function' })
  })

  it('an esbuild bundle (ESM, platform node) runs a Postgres export from another folder, and Parquet in-thread with a warning', async () => {
    await writeFile(
      join(project, 'bundled.mjs'),
      `import pg from 'pg'
import { exportStream, postgresSource, jsonl, parquet, fromIterable } from 'stream-export'
import { Writable } from 'node:stream'
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
let text = ''
const sink = new Writable({ write(chunk, _e, cb) { text += chunk; cb() } })
await exportStream({ source: postgresSource({ pool, text: 'select i as id from generate_series(1, 3) i order by i' }), format: jsonl(), sink })
await pool.end()
console.log(text.trim())
// Parquet of three row groups: no thread file beside the bundle, so encoded in-thread, with a warning.
const bytes = []
const file = new Writable({ write(chunk, _e, cb) { bytes.push(chunk); cb() } })
const rows = Array.from({ length: 3000 }, (_, i) => ({ id: i, memo: 'row ' + i }))
const result = await exportStream({ source: fromIterable(rows), format: parquet({ rowGroupSize: 1000 }), sink: file })
const all = Buffer.concat(bytes)
console.log(result.rows, all.subarray(0, 4).toString(), all.subarray(-4).toString())
`,
    )
    const out = join(work, 'bundle')
    await mkdir(out)
    // pg's optional native binding and Cloudflare socket are left out, as pg's own docs advise; the
    // banner gives bundled CommonJS code (pg) a require for Node's built-in modules.
    await exec(
      bin('esbuild'),
      [
        'bundled.mjs',
        '--bundle',
        '--platform=node',
        '--format=esm',
        `--outfile=${join(out, 'app.mjs')}`,
        '--external:pg-native',
        '--external:pg-cloudflare',
        '--banner:js=import { createRequire as __bundleRequire } from "node:module"; const require = __bundleRequire(import.meta.url);',
      ],
      { cwd: project },
    )
    const { stdout, stderr } = await node(join(out, 'app.mjs'), out)
    expect(stdout.trim().split('\n')).toEqual(['{"id":1}', '{"id":2}', '{"id":3}', '3000 PAR1 PAR1'])
    expect(stderr).toContain("[STREAM_EXPORT_PARQUET_THREADS] Warning: Parquet row groups are encoded on the stream's own thread")
  }, 60_000)

  for (const moduleResolution of ['node10', 'nodenext'] as const) {
    it(`TypeScript (strict, moduleResolution ${moduleResolution}): every entry resolves, and a custom sink types its location`, async () => {
      const dir = join(project, `ts-${moduleResolution}`)
      await mkdir(dir, { recursive: true })
      const module = moduleResolution === 'node10' ? 'commonjs' : 'nodenext'
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            module,
            moduleResolution,
            target: 'es2022',
            types: ['node'],
            // Our .d.ts files are checked in full once (nodenext); node10 proves that both entries resolve.
            skipLibCheck: moduleResolution === 'node10',
            typeRoots: [join(repo, 'node_modules', '@types')],
          },
        }),
      )
      await writeFile(
        join(dir, 'sink.ts'),
        `import { Writable } from 'node:stream'
import { exportStream, fromIterable, jsonl, type Sink } from 'stream-export'
import { createExportProcessor, type ExportJobResult } from 'stream-export/bullmq'
import { createLambdaExportHandler, type ContinuationStore } from 'stream-export/lambda'

/** A custom sink reporting where it put the bytes. */
function httpPutSink(url: string): Sink<{ url: string }> {
  let location: { url: string } | undefined
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback(), final: (callback) => ((location = { url }), callback()) })
  return Object.defineProperty(sink, 'location', { get: () => location }) as Sink<{ url: string }>
}

export async function run(): Promise<string | undefined> {
  const result = await exportStream({ source: fromIterable([{ a: 1 }]), format: jsonl(), sink: httpPutSink('https://example.com/x') })
  return result.location?.url
}
export type Used = [typeof createExportProcessor, ExportJobResult, typeof createLambdaExportHandler, ContinuationStore]
`,
      )
      await writeFile(
        join(dir, 'package.json'),
        JSON.stringify({ name: `ts-${moduleResolution}`, private: true, type: module === 'commonjs' ? 'commonjs' : 'module' }),
      )
      const result = await exec(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: dir }).catch((e) => e)
      expect(result.stdout ?? '').toBe('')
      expect(result.code ?? 0).toBe(0)
    }, 60_000)
  }
})
