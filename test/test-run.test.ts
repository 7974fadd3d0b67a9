// `npm test` tells the truth: a failing run exits non-zero, also on a newcomer's machine, where the
// global setup starts an embedded PostgreSQL (whose exit hooks once turned exit code 1 into 0).
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'

const root = new URL('..', import.meta.url).pathname
const vitest = new URL('../node_modules/vitest/vitest.mjs', import.meta.url).pathname

function run(env: Record<string, string | undefined>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [vitest, 'run', '--config', 'test/fixtures/failing-run/vitest.config.ts'], {
      cwd: root,
      env: { ...process.env, CI: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.once('error', reject)
    child.once('exit', (code) => resolve({ code, output }))
  })
}

describe('a failing test run', () => {
  it('exits 1 on the embedded PostgreSQL path (no server at DATABASE_URL)', async () => {
    const { code, output } = await run({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/test' })
    expect(output).toContain('starting an embedded PostgreSQL')
    expect(output).toContain('fails on purpose')
    expect(code).toBe(1)
  }, 120_000)
})
