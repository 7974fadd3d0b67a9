// The recipe "customer exports end to end" (examples/customer-exports/) as its customers meet it:
// the API and the worker in their own processes on real Redis, PostgreSQL, the S3 test server and
// a real SMTP server; each customer's e-mail link opened in headless Chromium saves their file
// under its name (non-ASCII kept); at the expiry the files are gone, the page says so, the link 410s.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { parse } from 'csv-parse/sync'
import { simpleParser, type ParsedMail } from 'mailparser'
import pg from 'pg'
import { chromium, type Browser } from 'playwright-core'
import { SMTPServer } from 'smtp-server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresExportLog } from '../src/index.js'
import { databaseUrl } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

const executablePath = process.env.CHROMIUM_PATH
const redisUp = process.env.REDIS_AVAILABLE === '1'
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const EXPIRES_IN = 20 // seconds: long enough to read the mail and download, short enough to watch the expiry
const tables = { CUSTOMERS: 'se_ce_customers', STATEMENTS: 'se_ce_statements', LOG_TABLE: 'se_ce_export_log' }

const skipped = !executablePath ? ' (skipped: no Chromium; set CHROMIUM_PATH)' : !redisUp ? ' (skipped: Redis is not reachable at REDIS_URL)' : ''
describe.skipIf(skipped !== '')(`recipe: customer exports end to end${skipped}`, () => {
  let s3: TestS3
  let browser: Browser
  let smtp: SMTPServer
  const mails: ParsedMail[] = []
  const children: ChildProcess[] = []
  let base: string
  let env: NodeJS.ProcessEnv

  const start = (file: string, extra: Record<string, string> = {}) => {
    const child = spawn(process.execPath, [new URL(`../examples/customer-exports/${file}`, import.meta.url).pathname], {
      env: { ...env, ...extra },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    children.push(child)
    return new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        const m = /listening on (\d+)|worker ready/.exec(d.toString())
        if (m) resolve(m[1] ?? '')
      })
      child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)))
    })
  }

  beforeAll(async () => {
    s3 = await startS3()
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData: (stream, _session, callback) => void simpleParser(stream).then((mail) => (mails.push(mail), callback()), callback),
    })
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve))
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    await pool.query(`drop table if exists ${tables.LOG_TABLE}`)
    await pool.end()
    env = {
      ...process.env,
      ...tables,
      QUEUE: `se-ce-${Date.now()}`,
      REDIS_URL: redisUrl,
      DATABASE_URL: databaseUrl(),
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: s3.bucket,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      SMTP_URL: `smtp://127.0.0.1:${(smtp.server.address() as { port: number }).port}`,
      RECREATE: '1',
      DOWNLOAD_SECRET: 'test secret',
      ROWS: '20000',
      EXPIRES_IN: String(EXPIRES_IN),
      EXPIRY_EVERY_MS: '1000',
      PORT: '0',
    }
    base = `http://127.0.0.1:${await start('server.mjs')}`
    await start('worker.mjs', { PUBLIC_URL: base })
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] })
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
    await new Promise<void>((resolve) => (smtp ? smtp.close(() => resolve()) : resolve()))
    await s3?.close()
  })

  it('API -> worker -> a file per customer -> an e-mail each -> the download endpoint in Chromium -> expiry', async () => {
    const posted = await fetch(`${base}/exports`, { method: 'POST', body: 'month=2026-02&requestedBy=user-7', redirect: 'manual' })
    expect(posted.status).toBe(303)
    const jobPage = new URL(posted.headers.get('location')!, base).href

    // One e-mail per customer, to that customer's address.
    await expect.poll(() => mails.length, { timeout: 60_000, interval: 200 }).toBe(5)
    const byAddress = new Map(mails.map((mail) => [(mail.to as { text: string }).text, mail]))
    expect([...byAddress.keys()].sort()).toEqual(
      ['accounts@lodz.example', 'ap@acme.example', 'billing@cafe-zuerich.example', 'keiri@tokyo-books.example', 'office@obrien.example'].sort(),
    )
    const mail = byAddress.get('billing@cafe-zuerich.example')!
    expect(mail.subject).toBe('Your export is ready: Statements Café Zürich GmbH 2026-02.csv.gz')
    const link = /Download: (\S+)/.exec(mail.text!)![1]!
    expect(link.startsWith(`${base}/downloads/`)).toBe(true) // the endpoint, which signs at each click

    // The customer clicks the link in a browser: the file saves under its name.
    const context = await browser.newContext({ acceptDownloads: true })
    const page = await context.newPage()
    await page.setContent(`<a id="link" href="${link}">Download</a>`)
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#link')])
    expect(download.suggestedFilename()).toBe('Statements Café Zürich GmbH 2026-02.csv.gz')
    const saved = join(await tempDir(), download.suggestedFilename())
    await download.saveAs(saved)
    const records = parse(gunzipSync(await readFile(saved)), { columns: true, bom: true }) as Array<{ customer: string }>
    expect(records).toHaveLength(4000) // id % 5: every fifth row
    expect(records.every((record) => record.customer === 'Café Zürich GmbH')).toBe(true)

    // The page lists each file with its expiry; the log counted the download.
    await page.goto(jobPage)
    expect(await page.locator('#files tr').count()).toBe(5)
    expect(await page.locator('#files').innerText()).toMatch(/available until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/)
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    try {
      const log = postgresExportLog({ pool, table: tables.LOG_TABLE })
      const entryId = decodeURIComponent(new URL(link).pathname.split('/downloads/')[1]!)
      expect(await log.get(entryId)).toMatchObject({ downloads: 1, requestedBy: 'user-7', filename: 'Statements Café Zürich GmbH 2026-02.csv.gz' })
      const [queue, jobId] = entryId.split('/')
      const exportId = `${queue}/${jobId}`
      // A link without its token, or another customer's entry with this token: refused.
      expect((await fetch(link.replace(/\?token=.*/, ''), { redirect: 'manual' })).status).toBe(404)
      expect(
        (await fetch(link.replace(/\/downloads\/[^?]+/, `/downloads/${encodeURIComponent(`${exportId}/ACME%20Corp`)}`), { redirect: 'manual' })).status,
      ).toBe(404)
      const prefix = `statements/2026-02/${jobId}/`
      const listed = async () => (await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))).KeyCount ?? 0
      expect(await listed()).toBe(6) // a file per customer and the manifest

      // After the expiry: the files and the manifest are gone, the log and the page say so, the link is Gone.
      await expect
        .poll(async () => (await log.list(exportId)).map((entry) => entry.deletedAt !== null), { timeout: 40_000, interval: 500 })
        .toEqual([true, true, true, true, true, true]) // the export's entry (its manifest) and each customer's
      expect(await listed()).toBe(0)
      await page.goto(jobPage)
      expect(await page.locator('#files tr.expired').count()).toBe(5)
      expect(await page.locator('#files').innerText()).toContain('the file was deleted')
      const gone = await fetch(link, { redirect: 'manual' })
      expect(gone.status).toBe(410)
      expect(await gone.text()).toContain('was deleted')
    } finally {
      await pool.end()
      await context.close()
    }
  }, 120_000)
})
