import { execFile, spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import ExcelJS from 'exceljs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseDuration, parseSize } from '../src/cli/args.js'
import { progressLine, redact } from '../src/cli/output.js'
import { cli, runCli } from './fixtures/cli.js'
import { databaseUrl, testPool } from './fixtures/postgres.js'
import { startMongoServer, type MongoTestServer } from './fixtures/mongo-server.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { listDir, sdkChecksum, tempDir } from './helpers.js'
import { MongoClient } from 'mongodb'
import pg from 'pg'

// The CLI runs as users run it: the built dist/cli.js in its own process (`npm test` builds first).
const run = runCli

let s3: TestS3
let mongo: MongoTestServer
beforeAll(async () => {
  s3 = await startS3()
  mongo = await startMongoServer()
  const client = await new MongoClient(mongo.url).connect()
  await client
    .db('shop')
    .collection<{ _id: number; total: number; status: string }>('orders')
    .insertMany(Array.from({ length: 1500 }, (_, i) => ({ _id: i, total: i * 2, status: i % 3 ? 'paid' : 'open' })))
  await client.close()
})
afterAll(async () => {
  await s3.close()
  await mongo.close()
})

const query = `select i as id, 'name, "' || i || '"' as name, (i * 1.5)::numeric(10,2) as amount from generate_series(1, 5000) i order by i`
const s3Env = () => ({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' })

/** The CLI exporting 20M rows (more than any test waits for) with `args`, to be stopped by a signal. */
function startLongExport(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(process.execPath, [cli, '--from', databaseUrl(), '--query', 'select i, md5(i::text) from generate_series(1, 20000000) i', ...args], {
    env,
  })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? -1)))
  return { child, exited, stderr: () => stderr }
}

describe('stream-export CLI', () => {
  it('Postgres -> gzipped CSV file', async () => {
    const dir = await tempDir()
    const path = join(dir, 'out.csv.gz')
    const result = await run(['--from', databaseUrl(), '--query', query, '--gzip', '--to', path])
    expect(result.code).toBe(0)
    const bytes = await readFile(path)
    // The summary, and the file's CRC64NVME (what S3 would show for the same bytes).
    expect(result.stdout).toMatch(/^exported 5,000 rows \(\d+\.\d MB\) to .*out\.csv\.gz in \d+\.\d s\ncrc64nvme (\S+)\n$/)
    expect(result.stdout.split('\n')[1]).toBe(`crc64nvme ${await sdkChecksum('CRC64NVME', bytes)}`)
    const records = parse(gunzipSync(bytes), { columns: true })
    expect(records).toHaveLength(5000)
    expect(records[4999]).toEqual({ id: '5000', name: 'name, "5000"', amount: '7500.00' })
  })

  it('--no-clobber: an existing file or object is refused before any byte is written (exit 7) and stays as it was; --checksum none prints none', async () => {
    const dir = await tempDir()
    const path = join(dir, 'kept.csv')
    await writeFile(path, 'earlier')
    const onFile = await run(['--from', databaseUrl(), '--query', query, '--to', path, '--no-clobber'])
    // Refused before the query runs: no progress, one line.
    expect(onFile).toMatchObject({
      code: 7,
      stderr: expect.stringMatching(/^stream-export: ERR_PRECONDITION: Refused before the query ran: .*overwrite: false\)\n$/),
    })
    expect(await readFile(path, 'utf8')).toBe('earlier')
    const to = `s3://${s3.bucket}/cli/kept.csv`
    expect((await run(['--from', databaseUrl(), '--query', query, '--to', to, '--endpoint', s3.endpoint], s3Env())).code).toBe(0)
    const again = await run(['--from', databaseUrl(), '--query', query, '--to', to, '--endpoint', s3.endpoint, '--no-clobber'], s3Env())
    expect(again).toMatchObject({ code: 7, stderr: expect.stringMatching(/^stream-export: ERR_PRECONDITION: Refused before the query ran: /) })
    const fresh = await run(['--from', databaseUrl(), '--query', query, '--to', join(dir, 'fresh.csv'), '--no-clobber', '--checksum', 'none'])
    expect(fresh.code).toBe(0)
    expect(fresh.stdout).not.toContain('crc')
    expect(await run(['--from', databaseUrl(), '--query', query, '--to', path, '--checksum', 'md5'])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--checksum'),
    })
  })

  it('Postgres -> S3 with a presigned URL, result as JSON', async () => {
    const result = await run(
      [
        '--from',
        databaseUrl(),
        '--query',
        query,
        '--format',
        'jsonl',
        '--gzip',
        '--to',
        `s3://${s3.bucket}/cli/out.jsonl.gz`,
        '--endpoint',
        s3.endpoint,
        '--presign',
        '1h',
        '--json',
      ],
      s3Env(),
    )
    expect(result.code).toBe(0)
    const output = JSON.parse(result.stdout)
    expect(output).toMatchObject({ rows: 5000, location: { bucket: s3.bucket, key: 'cli/out.jsonl.gz' } })
    expect(new URL(output.url).searchParams.get('X-Amz-Expires')).toBe('3600')
    const body = Buffer.from(await (await fetch(output.url)).arrayBuffer())
    const text = gunzipSync(body).toString() // the .gz file itself: no Content-Encoding for fetch to undo
    expect(text.trim().split('\n')).toHaveLength(5000)
    expect(result.stderr).not.toContain('S3RVER')
  })

  it('MongoDB -> JSON array file with a filter', async () => {
    const dir = await tempDir()
    const path = join(dir, 'orders.json')
    const url = mongo.url.replace('/?', '/shop?')
    const result = await run(['--from', url, '--collection', 'orders', '--filter', '{"status": "open"}', '--format', 'json', '--to', path, '--quiet'])
    expect(result).toMatchObject({ code: 0, stdout: '' })
    const orders = JSON.parse(await readFile(path, 'utf8'))
    expect(orders).toHaveLength(500)
    expect(orders.every((o: { status: string }) => o.status === 'open')).toBe(true)
    // The same in _id ranges on worker threads: the same documents, in _id order.
    const sharded = join(dir, 'sharded.json')
    const shards = await run(['--from', url, '--collection', 'orders', '--filter', '{"status": "open"}', '--shards', '3', '--to', sharded, '--quiet'])
    expect(shards).toMatchObject({ code: 0, stdout: '' })
    expect(JSON.parse(await readFile(sharded, 'utf8'))).toEqual(orders.sort((a: { _id: number }, b: { _id: number }) => a._id - b._id))
    const keyed = await run(['--from', url, '--collection', 'orders', '--shards', '3', '--key', 'n', '--to', sharded])
    expect(keyed.code).toBe(2)
    expect(keyed.stderr).toContain('--key is for a Postgres --table')
  })

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    it(`${signal} mid-export exits ${code} and leaves no partial file`, async () => {
      const dir = await tempDir()
      const { child, exited, stderr } = startLongExport(['--gzip', '--to', join(dir, 'big.csv.gz')])
      // Interrupt once the export has written bytes.
      await expect.poll(async () => (await listDir(dir)).length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(0)
      child.kill(signal)
      expect(await exited).toBe(code)
      expect(stderr()).toContain('stream-export: ERR_ABORTED: The export was aborted')
      expect(await listDir(dir)).toEqual([])
    }, 60_000)
  }

  it('SIGTERM during an S3 export aborts the multipart upload: no object, no open upload', async () => {
    const key = 'cli/killed.csv'
    const { child, exited } = startLongExport(['--to', `s3://${s3.bucket}/${key}`, '--endpoint', s3.endpoint], { ...process.env, ...s3Env() })
    await expect.poll(() => s3.partsReceived.get(key) ?? 0, { timeout: 30_000, interval: 50 }).toBeGreaterThan(0)
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    expect(await s3.openUploads()).toEqual([])
    const head = await fetch(`${s3.endpoint}/${s3.bucket}/${key}`, { method: 'HEAD' })
    expect(head.status).not.toBe(200)
  }, 60_000)

  it('--split-rows writes parts and prints the manifest path; --split-bytes takes sizes; SIGTERM mid-split leaves no part', async () => {
    const dir = await tempDir()
    const result = await run(['--from', databaseUrl(), '--query', query, '--split-rows', '2000', '--to', join(dir, 'orders.csv.gz')])
    expect(result.code).toBe(0)
    const runId = /orders-([0-9a-f]{8})-00001\.csv\.gz/.exec(result.stdout)?.[1]
    expect(result.stdout).toMatch(
      /^exported 5,000 rows \(\d+\.\d MB\) in 3 parts to .*orders-[0-9a-f]{8}-00001\.csv\.gz \.\. orders-[0-9a-f]{8}-00003\.csv\.gz in \d+\.\d s\n/,
    )
    expect(result.stdout).toContain(`manifest: ${join(dir, 'orders.manifest.json')}\n`)
    const parts = [1, 2, 3].map((n) => `orders-${runId}-0000${n}.csv.gz`)
    expect(await listDir(dir)).toEqual([...parts, 'orders.manifest.json'])
    const manifest = JSON.parse(await readFile(join(dir, 'orders.manifest.json'), 'utf8'))
    expect(manifest.parts.map((p: { rows: number }) => p.rows)).toEqual([2000, 2000, 1000])
    expect(parse(gunzipSync(await readFile(join(dir, parts[2]!))), { columns: true })[999]).toMatchObject({ id: '5000' })

    const bad = await run(['--from', databaseUrl(), '--query', query, '--split-bytes', '10 parsecs', '--to', join(dir, 'x.csv')])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--split-bytes: expected a size such as 100MB')
    expect((await run(['--from', databaseUrl(), '--query', query, '--split-rows', '10', '--to', '-'])).code).toBe(2)

    const killed = await tempDir()
    const { child, exited } = startLongExport(['--split-bytes', '1MB', '--to', join(killed, 'big.csv')])
    await expect
      .poll(async () => (await listDir(killed)).filter((name) => /^big-[0-9a-f]{8}-\d+\.csv$/.test(name)).length, { timeout: 20_000, interval: 50 })
      .toBeGreaterThan(2)
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    expect(await listDir(killed)).toEqual([])
  }, 60_000)

  it('--shards reads a table as key ranges on worker threads: the file one query in key order writes; SIGTERM mid-export leaves no file and no connection', async () => {
    const dir = await tempDir()
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    try {
      await pool.query('drop table if exists se_cli_sharded')
      await pool.query(
        `create table se_cli_sharded as select i::bigint as id, 'name, "' || i || '"' as name, (i * 1.5)::numeric(10,2) as amount from generate_series(1, 30000) i`,
      )
      await pool.query('alter table se_cli_sharded add primary key (id)')
      const sharded = await run(['--from', databaseUrl(), '--table', 'se_cli_sharded', '--shards', '3', '--to', join(dir, 'sharded.csv.gz')])
      expect(sharded.code).toBe(0)
      expect(sharded.stdout).toMatch(/^exported 30,000 rows/)
      await run(['--from', databaseUrl(), '--query', 'select * from se_cli_sharded order by id', '--to', join(dir, 'one.csv.gz')])
      expect(gunzipSync(await readFile(join(dir, 'sharded.csv.gz'))).equals(gunzipSync(await readFile(join(dir, 'one.csv.gz'))))).toBe(true)
      for (const [args, message] of [
        [['--shards', '0', '--table', 'se_cli_sharded'], '--shards: expected a positive whole number or auto'],
        [['--shards', '2'], '--shards splits a table or a collection'],
        [['--shards', '2', '--table', 'se_cli_sharded', '--copy'], '--shards reads key ranges: drop --since-state and --copy'],
      ]) {
        const refused = await run(['--from', databaseUrl(), ...args!, '--to', join(dir, 'x.csv')])
        expect(refused.code).toBe(2)
        expect(refused.stderr).toContain(message)
      }
      // A million rows: the export is mid-way when it is stopped.
      await pool.query('drop table if exists se_cli_sharded_big')
      await pool.query('create table se_cli_sharded_big as select i::bigint as id, md5(i::text) as v from generate_series(1, 1000000) i')
      await pool.query('alter table se_cli_sharded_big add primary key (id)')
      const stopDir = await tempDir()
      const child = spawn(
        process.execPath,
        [cli, '--from', databaseUrl(), '--table', 'se_cli_sharded_big', '--shards', 'auto', '--gzip', '--to', join(stopDir, 'big.csv.gz')],
        {
          env: process.env,
        },
      )
      let stderr = ''
      child.stderr.on('data', (d) => (stderr += d))
      const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? -1)))
      await expect.poll(async () => (await listDir(stopDir)).length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(0)
      child.kill('SIGTERM')
      expect(await exited).toBe(143)
      expect(stderr).toContain('ERR_ABORTED')
      expect(await listDir(stopDir)).toEqual([])
      const backends = `select count(*)::int as n from pg_stat_activity where application_name = current_setting('application_name') and pid <> pg_backend_pid()`
      await expect.poll(async () => (await pool.query(backends)).rows[0].n, { timeout: 5000 }).toBe(0)
    } finally {
      await pool.end()
    }
  }, 60_000)

  it('a bad query or a bad URL: one line, a non-zero exit, no password echoed', async () => {
    const dir = await tempDir()
    // A URL with a password (under trust authentication any will do; the embedded server's is real).
    const withPassword = new URL(databaseUrl())
    withPassword.password ||= 'hunter2'
    const bad = await run(['--from', withPassword.href, '--query', 'select nope', '--to', join(dir, 'x.csv')])
    expect(bad.code).toBe(3)
    expect(bad.stderr).toBe('stream-export: ERR_SOURCE: source failed: column "nope" does not exist\n')
    const refused = await run(['--from', 'postgres://u:hunter2@127.0.0.1:1/db', '--query', 'select 1', '--to', join(dir, 'x.csv')])
    expect(refused.code).toBe(3)
    expect(refused.stderr.trim().split('\n')).toHaveLength(1)
    expect(refused.stderr).not.toContain('hunter2')
    const scheme = await run(['--from', 'oracle://u:hunter2@h/db', '--query', 'select 1', '--to', 'x.csv'])
    expect(scheme.code).toBe(2)
    expect(scheme.stderr).toContain(
      '--from: expected a postgres://, mysql:// (mariadb://) or mongodb:// URL, or a .csv / .jsonl file, got "oracle://u:***@h/db"',
    )
    expect(scheme.stderr).not.toContain('hunter2')
    // A MySQL server that is not there: one line, exit 3, the password kept out.
    const mysql = await run(['--from', 'mysql://u:hunter2@127.0.0.1:1/db', '--query', 'select 1', '--to', join(dir, 'x.csv')])
    expect(mysql.code).toBe(3)
    expect(mysql.stderr.trim().split('\n')).toHaveLength(1)
    expect(mysql.stderr).not.toContain('hunter2')
    const usage = await run(['--from', databaseUrl(), '--to', join(dir, 'x.out'), '--format', 'xml', '--query', 'select 1'])
    expect(usage.code).toBe(2)
    expect(usage.stderr).toContain('--format: expected one of csv, jsonl, json, parquet, xlsx, got "xml"')
    expect(await listDir(dir)).toEqual([])
  })

  it('infers format and compression from --to, and refuses a contradiction', async () => {
    const dir = await tempDir()
    const parquetRun = await run(['--from', databaseUrl(), '--query', query, '--to', join(dir, 'out.parquet'), '--quiet'])
    expect(parquetRun.code).toBe(0)
    const parquetBytes = await readFile(join(dir, 'out.parquet'))
    expect(parquetBytes.subarray(0, 4).toString()).toBe('PAR1')
    const gz = await run(['--from', databaseUrl(), '--query', query, '--to', join(dir, 'x.jsonl.gz'), '--quiet'])
    expect(gz.code).toBe(0)
    const lines = gunzipSync(await readFile(join(dir, 'x.jsonl.gz')))
      .toString()
      .trim()
      .split('\n')
    expect(lines).toHaveLength(5000)
    expect(JSON.parse(lines[0])).toEqual({ id: 1, name: 'name, "1"', amount: '1.50' })
    const contradiction = await run(['--from', databaseUrl(), '--query', query, '--format', 'jsonl', '--to', join(dir, 'y.csv')])
    expect(contradiction.code).toBe(2)
    expect(contradiction.stderr).toContain('--format jsonl contradicts --to')
    const gzipped = await run(['--from', databaseUrl(), '--query', query, '--gzip', '--to', join(dir, 'y.csv')])
    expect(gzipped.code).toBe(2)
    // Parquet takes no .gz: --gzip is refused as such, not answered with "add .gz to the name".
    for (const args of [
      ['--gzip', '--to', join(dir, 'y.parquet')],
      ['--to', join(dir, 'y.parquet.gz')],
    ]) {
      const parquetGzip = await run(['--from', databaseUrl(), '--query', query, ...args])
      expect(parquetGzip.code).toBe(2)
      expect(parquetGzip.stderr).toContain('Parquet compresses itself; drop --gzip (or the .gz)')
    }
    // An Excel workbook from the name, with the columns asked for; never gzipped.
    const book = await run(['--from', databaseUrl(), '--query', query, '--to', join(dir, 'out.xlsx'), '--columns', 'name,id', '--quiet'])
    expect(book.code).toBe(0)
    const sheet = new ExcelJS.Workbook()
    await sheet.xlsx.load((await readFile(join(dir, 'out.xlsx'))) as unknown as ArrayBuffer)
    expect(sheet.worksheets[0]!.rowCount).toBe(5001)
    expect(sheet.worksheets[0]!.getRow(2).values).toEqual([undefined, 'name, "1"', 1])
    const zipped = await run(['--from', databaseUrl(), '--query', query, '--to', join(dir, 'out.xlsx.gz')])
    expect(zipped.code).toBe(2)
    expect(zipped.stderr).toContain('an XLSX workbook is a ZIP already')
    const csvOnly = await run(['--from', databaseUrl(), '--query', query, '--to', join(dir, 'y.xlsx'), '--excel'])
    expect(csvOnly.stderr).toContain('--excel is a CSV option; the format is xlsx')
    expect(await listDir(dir)).toEqual(['out.parquet', 'out.xlsx', 'x.jsonl.gz'])
  })

  it('--to - writes the data to standard output and messages to standard error', async () => {
    const result = await run(['--from', databaseUrl(), '--query', 'select i as id from generate_series(1, 3) i order by i', '--to', '-', '--format', 'jsonl'])
    expect(result.code).toBe(0)
    expect(result.stdout).toBe('{"id":1}\n{"id":2}\n{"id":3}\n')
    expect(result.stderr).toMatch(/exported 3 rows .* to standard output/)
    const gz = await run(['--from', databaseUrl(), '--query', 'select 1 as a', '--to', '-', '--gzip', '--quiet'])
    expect(gunzipSync(Buffer.from(gz.stdout, 'latin1')).toString()).toBe('a\n1\n')
  })

  it('--to - | head -2: the export stops quietly when the reader goes away, exit 0 (a pipefail script goes on), its query cancelled', async () => {
    const tag = `se_epipe_${Date.now()}`
    const script = `set -o pipefail; "${process.execPath}" "${cli}" --from "${databaseUrl()}" --query "select i /* ${tag} */ from generate_series(1, 20000000) i" --to - | head -2`
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile('bash', ['-c', script], { env: process.env }, (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr })),
    )
    expect(result).toEqual({ code: 0, stdout: 'i\n1\n', stderr: '' })
    const pool = testPool(1)
    const running = await pool.query(`select count(*)::int as n from pg_stat_activity where query like $1 and pid <> pg_backend_pid()`, [`%${tag}%`])
    expect(running.rows[0].n).toBe(0)
  }, 60_000)

  it('refuses a directory or a bucket without a key as --to before the query runs', async () => {
    const dir = await tempDir()
    const started = Date.now()
    const directory = await run(['--from', databaseUrl(), '--query', 'select pg_sleep(20)', '--to', dir])
    expect(directory.code).toBe(2)
    expect(directory.stderr).toContain('is a directory')
    expect(Date.now() - started).toBeLessThan(10_000) // the 20 s query never ran
    const bucket = await run(['--from', databaseUrl(), '--query', 'select 1', '--to', 's3://exports/'])
    expect(bucket.code).toBe(2)
    expect(bucket.stderr).toContain('expected s3://bucket/key')
    expect(await listDir(dir)).toEqual([])
  })

  it('creates missing folders of --to', async () => {
    const dir = await tempDir()
    const result = await run(['--from', databaseUrl(), '--query', 'select 1 as a', '--to', join(dir, 'exports', '2026', 'a.csv'), '--quiet'])
    expect(result.code).toBe(0)
    expect(await readFile(join(dir, 'exports', '2026', 'a.csv'), 'utf8')).toBe('a\n1\n')
  })

  it('sources: a CSV or JSONL file, SQL from a file or standard input, the connection from DATABASE_URL, --copy', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'in.csv.gz'), gzipSync('id,name\n1,a\n2,"b, c"\n'))
    const fromCsv = await run(['--from', join(dir, 'in.csv.gz'), '--to', '-', '--format', 'jsonl', '--quiet'])
    expect(fromCsv).toMatchObject({ code: 0, stdout: '{"id":"1","name":"a"}\n{"id":"2","name":"b, c"}\n' })
    // Typed: inferred or declared; an unquoted empty cell NULL with --empty-null.
    await writeFile(join(dir, 'paid.csv'), 'id,paid,note,zip\n1,false,,01234\n2,true,"",02134\n')
    const inferred = await run(['--from', join(dir, 'paid.csv'), '--infer', '--empty-null', '--to', '-', '--format', 'jsonl', '--quiet'])
    expect(inferred).toMatchObject({ code: 0, stdout: '{"id":1,"paid":false,"note":null,"zip":"01234"}\n{"id":2,"paid":true,"note":"","zip":"02134"}\n' })
    const declared = await run(['--from', join(dir, 'paid.csv'), '--types', 'id:integer,paid:boolean', '--to', '-', '--format', 'jsonl', '--quiet'])
    expect(declared).toMatchObject({ code: 0, stdout: '{"id":1,"paid":false,"note":"","zip":"01234"}\n{"id":2,"paid":true,"note":"","zip":"02134"}\n' })
    const badType = await run(['--from', join(dir, 'paid.csv'), '--types', 'zip:boolean', '--to', '-', '--quiet'])
    expect(badType).toMatchObject({ code: 3, stderr: 'stream-export: ERR_SOURCE: Line 2, column "zip": "01234" is not a boolean (true, false, t, f)\n' })
    const badFlag = await run(['--from', join(dir, 'paid.csv'), '--types', 'id:int', '--to', '-'])
    expect(badFlag.code).toBe(2)
    await writeFile(join(dir, 'in.jsonl'), '{"x":1}\n{"x":2}\n')
    const fromJsonl = await run(['--from', join(dir, 'in.jsonl'), '--to', '-', '--quiet'])
    expect(fromJsonl).toMatchObject({ code: 0, stdout: 'x\n1\n2\n' })

    await writeFile(join(dir, 'report.sql'), 'select 42 as answer')
    const env = { DATABASE_URL: databaseUrl() }
    for (const args of [
      ['--query', `@${join(dir, 'report.sql')}`],
      ['--query-file', join(dir, 'report.sql')],
    ]) {
      expect(await run([...args, '--to', '-', '--quiet'], env)).toMatchObject({ code: 0, stdout: 'answer\n42\n' })
    }
    expect(await run(['--query', '-', '--to', '-', '--quiet'], env, 'select 7 as seven')).toMatchObject({ code: 0, stdout: 'seven\n7\n' })
    const copied = await run(['--query', query, '--copy', '--to', join(dir, 'copy.csv'), '--quiet'], env)
    expect(copied.code).toBe(0)
    expect(parse(await readFile(join(dir, 'copy.csv')), { columns: true })).toHaveLength(5000)
    const noSource = await run(['--query', 'select 1', '--to', '-'], { DATABASE_URL: undefined })
    expect(noSource.code).toBe(2)
    expect(noSource.stderr).toContain('--from is required (or DATABASE_URL')
  })

  it('CSV options: --delimiter, --no-header, --null, --excel, --bom, --columns', async () => {
    const sql = `select 1 as id, null::text as note, '=1+1' as formula, 'x' as extra`
    const plain = await run([
      '--from',
      databaseUrl(),
      '--query',
      sql,
      '--to',
      '-',
      '--delimiter',
      ';',
      '--null',
      'NULL',
      '--columns',
      'formula,id,note',
      '--quiet',
    ])
    expect(plain).toMatchObject({ code: 0, stdout: 'formula;id;note\n=1+1;1;NULL\n' })
    const excel = await run(['--from', databaseUrl(), '--query', sql, '--to', '-', '--excel', '--no-header', '--quiet'])
    expect(Buffer.from(excel.stdout, 'latin1').toString('utf8')).toBe("\ufeff1,,'=1+1,x\r\n")
    const bom = await run(['--from', databaseUrl(), '--query', 'select 1 as a', '--to', '-', '--bom', '--quiet'])
    expect(Buffer.from(bom.stdout, 'latin1').toString('utf8')).toBe('\ufeffa\n1\n')
    const wrong = await run(['--from', databaseUrl(), '--query', sql, '--to', '-', '--format', 'jsonl', '--delimiter', ';'])
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toContain('--delimiter is a CSV option')
  })

  it('--since-state: each run exports the rows written since the last, the watermark in a file or a Postgres table; a state that cannot be stored exits 6 after the commit', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    try {
      await pool.query('drop table if exists se_cli_orders; drop table if exists se_cli_marks')
      await pool.query(`create table se_cli_orders (id int primary key, status text, updated_at timestamptz default now())`)
      await pool.query(`insert into se_cli_orders (id, status) select i, 'new' from generate_series(1, 300) i`)
      const dir = await tempDir()
      const ids = async (name: string) => (parse(await readFile(join(dir, name)), { columns: true }) as Array<{ id: string }>).map((row) => Number(row.id))
      const feedOf = (state: string) => [
        '--from',
        databaseUrl(),
        '--table',
        'se_cli_orders',
        '--order-by',
        'updated_at',
        '--since-state',
        state,
        '--feed',
        'orders',
        '--quiet',
      ]
      for (const state of [join(dir, 'state.json'), 'postgres:se_cli_marks']) {
        const feed = feedOf(state)
        expect((await run([...feed, '--to', join(dir, 'all.csv')])).code).toBe(0)
        expect(await ids('all.csv')).toHaveLength(300)
        await pool.query(`update se_cli_orders set status = 'paid', updated_at = now() where id in (7, 42)`)
        expect((await run([...feed, '--to', join(dir, 'delta.csv')])).code).toBe(0)
        expect(await ids('delta.csv')).toEqual([7, 42])
        expect((await run([...feed, '--to', join(dir, 'none.csv')])).code).toBe(0)
        expect(await ids('none.csv')).toEqual([])
      }
      expect(Object.keys(JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')))).toEqual(['orders'])
      expect((await pool.query('select name from se_cli_marks')).rows).toEqual([{ name: 'orders' }])

      // A state table that refuses writes: the export lands, the watermark cannot be stored.
      await pool.query('drop table if exists se_cli_stuck')
      await pool.query('create table se_cli_stuck (name text primary key, watermark jsonb not null, updated_at timestamptz not null default now())')
      await pool.query(`create or replace function se_cli_refuse() returns trigger language plpgsql as $$ begin raise exception 'read-only state'; end $$`)
      await pool.query('create trigger se_cli_refuse before insert or update on se_cli_stuck for each row execute function se_cli_refuse()')
      const stuck = ['--from', databaseUrl(), '--table', 'se_cli_orders', '--since-state', 'postgres:se_cli_stuck']
      const failed = await run([...stuck, '--to', join(dir, 'landed.csv')])
      expect(failed.code).toBe(6)
      expect(failed.stderr).toMatch(/ERR_STATE: .*the next run exports these rows again\. read-only state/)
      expect(await ids('landed.csv')).toHaveLength(300)
      expect((await run(['--from', databaseUrl(), '--table', 'x', '--to', join(dir, 'x.csv')])).stderr).toContain('--table is for an incremental export')
      expect((await run([...feedOf(join(dir, 'state.json')), '--query', 'select 1', '--to', join(dir, 'x.csv')])).code).toBe(2)
      const notPostgres = await run(['--from', join(dir, 'all.csv'), '--table', 't', '--since-state', join(dir, 's.json'), '--to', join(dir, 'x.csv')])
      expect([notPostgres.code, notPostgres.stderr]).toEqual([2, expect.stringContaining('--since-state needs a Postgres --from')])
    } finally {
      await pool.end()
    }
  })

  it('-h and --help print the usage on standard output; --version prints the version', async () => {
    for (const flag of ['-h', '--help']) {
      const help = await run([flag])
      expect(help.code).toBe(0)
      expect(help.stdout).toMatch(/^Usage: stream-export/)
      expect(help.stderr).toBe('')
    }
    const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
    expect(await run(['--version'])).toMatchObject({ code: 0, stdout: `${version}\n` })
  })

  it('formats progress, durations and redacts credentials', () => {
    expect(
      progressLine(
        { rows: 1500, bytes: 2_500_000, uncompressedBytes: 0, elapsedMs: 1000, rowsPerSecond: 1500, totalRows: 3000, percent: 50, etaMs: 61_000 },
        10,
      ),
    ).toBe('[#####.....]  50.0%  1,500 rows  1,500 rows/s  ETA 1m01s  2.5 MB')
    expect(progressLine({ rows: 10, bytes: 0, uncompressedBytes: 0, elapsedMs: 1, rowsPerSecond: 10 })).toBe('10 rows  10 rows/s  0.0 MB')
    expect(parseDuration('24h')).toBe(86_400)
    expect(parseDuration('90')).toBe(90)
    expect([parseSize('100MB'), parseSize('1.5 GB'), parseSize('512MiB'), parseSize('4096')]).toEqual([100e6, 1.5e9, 512 * 2 ** 20, 4096])
    for (const size of ['0', '-1MB', 'MB', '1TB']) expect(() => parseSize(size)).toThrow('--split-bytes')
    expect(() => parseDuration('soon')).toThrow('--presign: expected a duration')
    expect(redact('postgres://me:s3cret@db:5432/x and mongodb+srv://a:b@c/d')).toBe('postgres://me:***@db:5432/x and mongodb+srv://a:***@c/d')
    expect(redact('mysql://u:pa/ss@w0rd@h/db')).toBe('mysql://u:***@h/db')
    expect(redact('sqlserver://h/db?user=u&password=hunter2&ssl=1')).toBe('sqlserver://h/db?user=u&password=***&ssl=1')
    expect(redact('postgres://h/db?sslpassword=k3y')).not.toContain('k3y')
  })
})
