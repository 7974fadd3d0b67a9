// The CLI's production options, in the real CLI process: the Postgres session's guards and the
// export's rate; a bad value is exit 2 before anything runs.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { runCli } from './fixtures/cli.js'
import { databaseUrl } from './fixtures/postgres.js'
import { tempDir } from './helpers.js'

const settings = `select current_setting('application_name') as name, current_setting('statement_timeout') as timeout,
  current_setting('lock_timeout') as lock, current_setting('default_transaction_read_only') as ro`

beforeAll(async () => {
  const client = new pg.Client({ connectionString: databaseUrl() })
  await client.connect()
  await client.query('create sequence if not exists se_cli_guard_seq')
  await client.end()
})

describe('stream-export production options', () => {
  it('--statement-timeout cancels a slow query: exit 3 with the server saying why, in well under the query time', async () => {
    const started = Date.now()
    const { code, stderr } = await runCli(['--from', databaseUrl(), '--query', 'select pg_sleep(10)', '--to', '-', '--statement-timeout', '300ms', '--quiet'])
    expect(code).toBe(3)
    expect(stderr).toContain('canceling statement due to statement timeout')
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('the session carries the guards asked for (and is read-only unless --read-write)', async () => {
    const args = ['--from', databaseUrl(), '--query', settings, '--to', '-', '--quiet']
    const guarded = await runCli([...args, '--application-name', 'stream-export:nightly', '--statement-timeout', '2m', '--lock-timeout', '500ms'])
    expect(guarded).toMatchObject({ code: 0, stdout: 'name,timeout,lock,ro\nstream-export:nightly,2min,500ms,on\n' })
    const writable = await runCli([...args, '--read-write'])
    expect(writable.code).toBe(0)
    expect(writable.stdout.split('\n')[1]!.endsWith(',off')).toBe(true)
    const write = await runCli(['--from', databaseUrl(), '--query', "select nextval('se_cli_guard_seq')", '--to', '-', '--quiet'])
    expect(write).toMatchObject({ code: 3, stderr: expect.stringContaining('read-only transaction') })
  })

  it('--max-rows-per-second holds the export to its rate', async () => {
    const started = Date.now()
    const { code, stdout } = await runCli([
      '--from',
      databaseUrl(),
      '--query',
      'select g from generate_series(1, 3000) g',
      '--to',
      '-',
      '--quiet',
      '--max-rows-per-second',
      '2000',
    ])
    expect(code).toBe(0)
    expect(stdout.split('\n')).toHaveLength(3002)
    expect(Date.now() - started).toBeGreaterThan(1400)
  })

  it('bad values, and guards for a source that is not Postgres: exit 2 before anything runs', async () => {
    for (const args of [
      ['--statement-timeout', '30'],
      ['--statement-timeout', 'soon'],
      ['--lock-timeout', '0ms'],
      ['--application-name', 'ünïcode'],
      ['--max-rows-per-second', '0'],
      ['--max-bytes-per-second', 'fast'],
    ]) {
      const { code, stderr } = await runCli(['--from', databaseUrl(), '--query', 'select 1', '--to', '-', ...args])
      expect(code, args.join(' ')).toBe(2)
      expect(stderr).toContain(args[0])
    }
    const file = await runCli(['--from', 'in.csv', '--to', '-', '--statement-timeout', '1s'])
    expect(file).toMatchObject({ code: 2, stderr: expect.stringContaining('--statement-timeout is for a Postgres source') })
  })
})

describe('stream-export --dry-run', () => {
  it('prints the estimate and writes nothing (the destination is never opened)', async () => {
    const dir = await tempDir()
    const to = join(dir, 'out.csv.gz')
    const query = 'select g as id, md5(g::text) as h from generate_series(1, 20000) g'
    const text = await runCli(['--from', databaseUrl(), '--query', query, '--to', to, '--count', 'exact', '--split-rows', '5000', '--dry-run'])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^dry run: nothing was written\nrows: {2}20,000 \(counted\)\nsize: {2}~[\d.]+ MB of csv \(gzip\)/)
    expect(text.stdout).toContain('parts: ~4')
    const json = await runCli(['--from', databaseUrl(), '--query', query, '--to', to, '--count', 'exact', '--dry-run', '--json'])
    expect(JSON.parse(json.stdout)).toMatchObject({ rows: 20_000, sample: { rows: 10_000 } })
    expect(await readdir(dir)).toEqual([])
  })
})
