// Shared helpers for the benchmarks: child processes, timing, and writing docs/benchmarks.md.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'

/** Runs a benchmark script in its own process (so peak RSS is its own) and returns its JSON result. */
export function runChild(script, args = [], env = {}) {
  const started = performance.now()
  const child = spawnSync(process.execPath, [script, ...args.map(String)], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  })
  const processMs = performance.now() - started // the whole process: start-up and imports too
  if (child.status !== 0) throw new Error(`${script} ${args.join(' ')} failed:\n${child.stderr}`)
  return { processMs, ...JSON.parse(child.stdout.trim().split('\n').at(-1)) }
}

/** runChild without blocking this process (for a server it runs itself, like the S3 suite's). */
export function runChildAsync(script, args = [], env = {}, nodeArgs = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, script, ...args.map(String)], { env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${script} ${args.join(' ')} failed:\n${stderr}`))
      else resolve(JSON.parse(stdout.trim().split('\n').at(-1)))
    })
  })
}

/** Wall time of a shell command, in ms. */
export function timeShell(command) {
  const started = performance.now()
  execFileSync('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'] })
  return performance.now() - started
}

/** Peak RSS of this process in MB. */
export const peakRssMb = () => process.resourceUsage().maxRSS / 1024

export function machine() {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  return (
    `${os.availableParallelism()} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ` + `${os.type()} ${os.release()}, Node ${process.version}`
  )
}

export const fmt = {
  int: (n) => Math.round(n).toLocaleString('en'),
  s: (ms) => (ms / 1000).toFixed(2),
  mb: (bytes) => (bytes / 1e6).toFixed(1),
  x: (ratio) => `${ratio.toFixed(2)}x`,
}

/** Replaces (or appends) the section between `<!-- bench:NAME -->` markers in docs/benchmarks.md. */
export function writeSection(name, markdown) {
  const path = new URL('../docs/benchmarks.md', import.meta.url)
  const start = `<!-- bench:${name} -->`
  const end = `<!-- /bench:${name} -->`
  const block = `${start}\n${markdown.trim()}\n${end}`
  let doc = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n'
  const from = doc.indexOf(start)
  const to = doc.indexOf(end)
  doc = from >= 0 && to > from ? doc.slice(0, from) + block + doc.slice(to + end.length) : `${doc.trimEnd()}\n\n${block}\n`
  writeFileSync(path, doc)
}

/** Runs `measure` `times` times, interleaved by the caller's loop order, and keeps the median by `ms`. */
export function median(results) {
  const sorted = [...results].sort((a, b) => a.ms - b.ms)
  return sorted[Math.floor(sorted.length / 2)]
}

/**
 * The test suite's S3 server (s3rver with its middleware), in this process: it is TypeScript, so it
 * is bundled first (its packages stay external), then imported.
 */
export async function startTestS3(bucket) {
  const { build } = await import('esbuild')
  const fixture = new URL('./.data/s3-server.mjs', import.meta.url).pathname
  await build({
    entryPoints: [new URL('../test/fixtures/s3-server.ts', import.meta.url).pathname],
    outfile: fixture,
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    logLevel: 'error',
  })
  const { startS3 } = await import(fixture)
  return startS3(bucket)
}

/**
 * A TCP proxy in front of PostgreSQL at `url` that holds every chunk the client sends for
 * `delayMs` (in order) before it reaches the server; the server's answers come back at once. Each
 * query or cursor page then costs one delayed round trip, as a database in another region does.
 * Resolves with the URL to connect through, and `close()`.
 */
export async function startDelayProxy(url, delayMs) {
  const target = new URL(url)
  const proxy = net.createServer((client) => {
    const server = net.connect(Number(target.port || 5432), target.hostname)
    let chain = Promise.resolve()
    client.on('data', (chunk) => {
      chain = chain.then(() => new Promise((resolve) => setTimeout(resolve, delayMs))).then(() => server.write(chunk))
    })
    server.pipe(client)
    const close = () => {
      client.destroy()
      server.destroy()
    }
    client.on('error', close).on('close', close)
    server.on('error', close).on('close', close)
  })
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const through = new URL(url)
  through.host = `127.0.0.1:${proxy.address().port}`
  return { url: through.toString(), close: () => new Promise((resolve) => proxy.close(resolve)) }
}
