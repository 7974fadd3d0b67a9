import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync, gzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import { stringify } from 'csv-stringify/sync'
import ExcelJS from 'exceljs'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { createStatementsTable, statementRow } from '../examples/statements.mjs'
import { databaseUrl, tableCsv } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { startAzure } from './fixtures/azurite.js'
import { Crc64Nvme } from '@aws-sdk/checksums/crc'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import type { Manifest } from '../src/index.js'
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifyWebhook } from '../src/bullmq.js'
import { expectSameBytes, tempDir } from './helpers.js'

const run = promisify(execFile)
const examples = new URL('../examples/', import.meta.url).pathname

// Examples import 'stream-export' itself (the built dist/, as a user would): `npm test` builds first.
describe('examples', () => {
  it('demo exports statements to out/statements.csv.gz and prints the figures', async () => {
    const cwd = await tempDir()
    const { stdout } = await run(process.execPath, [join(examples, 'demo.mjs'), '5000'], { cwd })
    expect(stdout).toContain('exported 5,000 rows to out/statements.csv.gz')
    expect(stdout).toMatch(/peak RSS \d+ MB/)
    const records = parse(gunzipSync(await readFile(join(cwd, 'out/statements.csv.gz'))), { columns: true })
    expect(records).toHaveLength(5000)
    const row = statementRow(4321)
    expect(records[4321]).toEqual({ ...row, id: String(row.id), posted_at: row.posted_at.toISOString() })
  })
})

describe('examples/mask-emails', () => {
  it('masks the e-mails of a gzipped CSV into JSON Lines', async () => {
    const dir = await tempDir()
    const rows = Array.from({ length: 20_000 }, (_, i) => statementRow(i))
    await writeFile(join(dir, 'users.csv.gz'), gzipSync(stringify(rows, { header: true, cast: { date: (d: Date) => d.toISOString() } })))
    const { stdout } = await run(process.execPath, [join(examples, 'mask-emails.mjs'), join(dir, 'users.csv.gz'), join(dir, 'masked.jsonl.gz')])
    expect(JSON.parse(stdout).rows).toBe(20_000)
    const out = gunzipSync(await readFile(join(dir, 'masked.jsonl.gz')))
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(out).toHaveLength(20_000)
    for (const [i, row] of out.entries()) {
      const email = rows[i].email
      expect(row.email).toBe(`${email[0]}***${email.slice(email.indexOf('@'))}`)
      expect(row.memo).toBe(rows[i].memo)
    }
    expect(out.some((r) => r.email.includes(rows[0].email.split('@')[0].slice(1)))).toBe(false)
  })
})

describe('examples with services', () => {
  const TABLE = 'se_example_statements'
  const ROWS = 100_000
  let s3: TestS3
  beforeAll(async () => {
    s3 = await startS3()
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    await createStatementsTable(pool, TABLE, ROWS)
    await pool.end()
  }, 120_000)
  afterAll(() => s3.close())
  const s3Env = () => ({
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    DATABASE_URL: databaseUrl(),
  })

  /**
   * SIGTERM (a deploy, a scale-down), as a recipe meets it: it must close its connections and exit
   * by itself, with 0. Resolves with the exit code, or 'still running' (then it is killed).
   */
  async function terminate(child: ChildProcess): Promise<number | string | null> {
    if (child.exitCode !== null) return child.exitCode
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(resolve, 10_000, 'still running'))])
    if (code === 'still running') child.kill('SIGKILL')
    return code
  }

  /** Starts an example server and resolves with its port, read from its "listening on" line. */
  function startServer(file: string, env: Record<string, string>): Promise<{ port: number; child: ChildProcess }> {
    const child = spawn(process.execPath, [join(examples, file)], { env: { ...process.env, ...env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
    onTestFinished(async () => expect(await terminate(child)).toBe(0))
    return new Promise((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        const m = /listening on (\d+)/.exec(d.toString())
        if (m) resolve({ port: Number(m[1]), child })
      })
      child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)))
    })
  }

  it.skipIf(process.env.REDIS_AVAILABLE !== '1')(
    'api-enqueue + bullmq-worker: enqueue, watch progress, download the rows',
    async () => {
      const queue = `se-example-${Date.now()}`
      const env = { ...s3Env(), QUEUE: queue, EXPORT_TABLES: TABLE, REDIS_URL: process.env.REDIS_URL! }
      const { port } = await startServer('api-enqueue.mjs', env)
      const worker = spawn(process.execPath, [join(examples, 'bullmq-worker.mjs')], {
        env: { ...process.env, ...env, PROGRESS_INTERVAL_MS: '100' },
        stdio: 'ignore',
      })
      onTestFinished(async () => expect(await terminate(worker)).toBe(0))
      const api = `http://127.0.0.1:${port}/exports`
      const posted = await fetch(api, { method: 'POST', body: JSON.stringify({ table: TABLE, format: 'csv' }) })
      expect(posted.status).toBe(202)
      const { jobId } = (await posted.json()) as { jobId: string }
      expect((await fetch(api, { method: 'POST', body: JSON.stringify({ table: 'users; drop table x' }) })).status).toBe(400)
      const seen: Array<{ status: string; progress: { rows?: number } | null; url?: string; rows?: number }> = []
      await expect
        .poll(
          async () => {
            const status = (await (await fetch(`${api}/${jobId}`)).json()) as (typeof seen)[number]
            seen.push(status)
            return status.status
          },
          { timeout: 60_000, interval: 50 },
        )
        .toBe('completed')
      expect(seen.some((s) => s.status === 'active' && (s.progress?.rows ?? 0) > 0)).toBe(true) // progress while it ran
      const done = seen.at(-1)!
      expect(done.rows).toBe(ROWS)
      const body = Buffer.from(await (await fetch(done.url!)).arrayBuffer())
      expectSameBytes(gunzipSync(body), await tableCsv(TABLE)) // the .gz file itself: no Content-Encoding for fetch to undo
    },
    120_000,
  )

  it('http-download streams an export into the response', async () => {
    const { port } = await startServer('http-download.mjs', { DATABASE_URL: databaseUrl(), TABLE })
    const response = await fetch(`http://127.0.0.1:${port}/statements.csv`)
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="statements.csv"')
    const records = parse(await response.text(), { columns: true }) as Array<{ id: string }>
    expect(records).toHaveLength(50_000)
    expect(records[49_999].id).toBe('50000')
  })

  // examples/sqs-lambda.mjs is run as a deployed Lambda by test/lambda.test.ts.

  it('monthly-statements writes an Excel-ready gzipped CSV to S3 and prints a download URL', async () => {
    const { stdout } = await run(process.execPath, [join(examples, 'monthly-statements.mjs'), '20000'], { env: { ...process.env, ...s3Env(), RECREATE: '1' } })
    const { rows, url, key } = JSON.parse(stdout)
    expect(rows).toBe(20_000)
    expect(key).toBe('statements/2026-02.csv.gz')
    const response = await fetch(url)
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="statements-2026-02.csv.gz"')
    const text = gunzipSync(Buffer.from(await response.arrayBuffer())).toString() // stored as a .gz file, not Content-Encoding
    expect(text.startsWith('\ufeffid,user_name,email,currency,amount,posted_at,memo\r\n')).toBe(true)
    const records = parse(text, { columns: true, bom: true }) as Array<{ amount: string; memo: string }>
    expect(records).toHaveLength(20_000)
    // Negative amounts are numbers by the column's type (numeric): never formula-escaped.
    expect(records.filter((r) => r.amount.startsWith('-')).length).toBeGreaterThan(1000)
    expect(records.filter((r) => r.amount.startsWith("'"))).toEqual([])
  }, 120_000)

  it('monthly-statements-azure writes the gzipped CSV to an Azure container, checks it, and prints a SAS link that downloads it', async () => {
    const azure = await startAzure()
    onTestFinished(() => azure.close())
    const env = { ...process.env, AZURE_STORAGE_CONNECTION_STRING: azure.connectionString, AZURE_CONTAINER: 'examples', RECREATE: '1' }
    const { stdout } = await run(process.execPath, [join(examples, 'monthly-statements-azure.mjs'), '20000'], { env })
    const { rows, blob, checksum, url } = JSON.parse(stdout) as { rows: number; blob: string; checksum: string; url: string }
    expect({ rows, blob }).toEqual({ rows: 20_000, blob: 'statements/2026-02.csv.gz' })
    const response = await fetch(url)
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="statements-2026-02.csv.gz"')
    const body = Buffer.from(await response.arrayBuffer())
    expect(body.equals(await azure.service.getContainerClient('examples').getBlockBlobClient(blob).downloadToBuffer())).toBe(true)
    const crc = new Crc64Nvme()
    crc.update(body)
    expect(Buffer.from(await crc.digest()).toString('base64')).toBe(checksum)
    const records = parse(gunzipSync(body).toString(), { columns: true, bom: true }) as unknown[]
    expect(records).toHaveLength(20_000)
  }, 120_000)

  it('statements-per-customer writes a gzipped CSV per customer in one pass, a link each, a signed webhook each', async () => {
    const received: Array<{ jobId: string; rows: number; url: string }> = []
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (chunk: Buffer) => (body += chunk.toString()))
      req.on('end', () => {
        const signed = verifyWebhook({
          secret: 'shh',
          body,
          signature: req.headers[SIGNATURE_HEADER] as string,
          timestamp: req.headers[TIMESTAMP_HEADER] as string,
        })
        if (signed) received.push(JSON.parse(body) as { jobId: string; rows: number; url: string })
        res.writeHead(signed ? 204 : 401).end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const webhook = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    const { stdout } = await run(process.execPath, [join(examples, 'statements-per-customer.mjs'), '20000', '50'], {
      env: { ...process.env, ...s3Env(), RECREATE: '1', WEBHOOK_URL: webhook, WEBHOOK_SECRET: 'shh' },
    })
    const out = JSON.parse(stdout) as { rows: number; manifest: string; customers: Array<{ customer: string; rows: number; url: string }> }
    expect(out.rows).toBe(20_000)
    expect(out.manifest).toBe('statements/2026-02/partitions.manifest.json')
    expect(out.customers).toHaveLength(50)
    expect(out.customers.reduce((sum, c) => sum + c.rows, 0)).toBe(20_000)
    expect(received.map((n) => n.jobId).sort()).toEqual(out.customers.map((c) => `2026-02/${c.customer}`).sort())
    for (const { customer, rows, url } of out.customers.slice(0, 3)) {
      const response = await fetch(url)
      expect(response.headers.get('content-disposition')).toBe(`attachment; filename="statements-2026-02-${customer}.csv.gz"`)
      const records = parse(gunzipSync(Buffer.from(await response.arrayBuffer())), { columns: true, bom: true }) as Array<{ customer: string }>
      expect(records).toHaveLength(rows)
      expect(records.every((record) => record.customer === customer)).toBe(true)
    }
  }, 120_000)

  it('monthly-statements-xlsx writes a workbook to S3 whose link downloads it under its name: a Summary sheet, then typed cells in a Statements sheet', async () => {
    const { stdout } = await run(process.execPath, [join(examples, 'monthly-statements-xlsx.mjs'), '20000'], {
      env: { ...process.env, ...s3Env(), RECREATE: '1' },
    })
    const { rows, url, key, sheets } = JSON.parse(stdout)
    expect(sheets.map((s: { name: string; rows: number }) => [s.name, s.rows])).toEqual([
      ['Summary', sheets[0].rows],
      ['Statements', 20_000],
    ])
    expect(rows).toBe(20_000 + sheets[0].rows)
    expect(key).toBe('statements/2026-02.xlsx')
    const response = await fetch(url)
    expect(response.headers.get('content-type')).toBe('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="statements-2026-02.xlsx"')
    const book = new ExcelJS.Workbook()
    await book.xlsx.load(await response.arrayBuffer())
    expect(book.worksheets.map((s) => s.name)).toEqual(['Summary', 'Statements'])
    const sheet = book.getWorksheet('Statements')!
    expect(sheet.rowCount).toBe(20_001)
    expect(sheet.getRow(1).values).toEqual([undefined, 'ID', 'Posted', 'Name', 'Amount', 'Currency', 'Memo'])
    // Typed from the table's columns: int8 and numeric(14,2) as numbers, timestamptz as a date.
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    const {
      rows: [first],
    } = await pool.query('select id, posted_at, user_name, amount, currency, memo from monthly_statements where id = 1')
    // The summary: a row per currency, its count and its exact total, from the same table.
    const { rows: totals } = await pool
      .query('select currency, count(*)::int as n, sum(amount)::text as total from monthly_statements group by currency order by currency')
      .finally(() => pool.end())
    const summary = book.getWorksheet('Summary')!
    expect(summary.getRow(1).values).toEqual([undefined, 'Currency', 'Statements', 'Total'])
    expect(
      summary
        .getSheetValues()
        .slice(2)
        .map((row) => (row as unknown[]).slice(1)),
    ).toEqual(totals.map((t) => [t.currency, t.n, Number(t.total)]))
    expect(sheet.getRow(2).values).toEqual([undefined, 1, first.posted_at, first.user_name, Number(first.amount), first.currency, first.memo])
    expect(sheet.getCell('B2').numFmt).toBe('yyyy-mm-dd hh:mm:ss')
  }, 120_000)

  it('split-to-s3 writes gzipped CSV parts and prints the manifest that lists them', async () => {
    const { stdout } = await run(process.execPath, [join(examples, 'split-to-s3.mjs'), '25000', '10000'], {
      env: { ...process.env, ...s3Env(), RECREATE: '1' },
    })
    const manifest = JSON.parse(stdout) as Manifest<{ bucket: string; key: string }>
    expect(manifest).toMatchObject({ rows: 25_000, compression: 'gzip', format: 'csv' })
    const runId = /^statements\/2026-11-23-([0-9a-f]{8})-00001\.csv\.gz$/.exec(manifest.parts[0]!.location.key)![1]
    expect(manifest.parts.map((p) => [p.location.key, p.rows])).toEqual([
      [`statements/2026-11-23-${runId}-00001.csv.gz`, 10_000],
      [`statements/2026-11-23-${runId}-00002.csv.gz`, 10_000],
      [`statements/2026-11-23-${runId}-00003.csv.gz`, 5_000],
    ])
    const last = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: manifest.parts[2]!.location.key }))
    const records = parse(gunzipSync(await last.Body!.transformToByteArray()), { columns: true }) as Array<{ id: string }>
    expect(records.map((r) => Number(r.id))).toEqual(Array.from({ length: 5000 }, (_, i) => 20_001 + i))
    expect(await s3.exists('statements/2026-11-23.manifest.json')).toBe(true)
  }, 120_000)
})
