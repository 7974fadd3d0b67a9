// The status page recipe (examples/status-page/) as a person meets it: headless Chromium (Debian's,
// driven by playwright-core) against the recipe's server and worker on real Redis, PostgreSQL and
// the test S3 server. The bar must move, the download must be the export, a failure must say why.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import pg from 'pg'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createStatementsTable } from '../examples/statements.mjs'
import { databaseUrl, tableCsv } from './fixtures/postgres.js'
import { startRecipeWorker } from './fixtures/recipe-worker.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { expectSameBytes, tempDir } from './helpers.js'

const executablePath = process.env.CHROMIUM_PATH
const redisUp = process.env.REDIS_AVAILABLE === '1'
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const TABLE = 'se_status_rows'
const MISSING = 'se_status_missing' // allowed by the page, absent from the database
const ROWS = 120_000
// The screenshot linked from the docs is written there with UPDATE_SCREENSHOTS=1; otherwise to a
// temporary folder, so that a test run leaves the working tree as it was.
const DOCS_SCREENSHOT = new URL('../docs/status-page.png', import.meta.url).pathname

const skipped = !executablePath ? ' (skipped: no Chromium; set CHROMIUM_PATH)' : !redisUp ? ' (skipped: Redis is not reachable at REDIS_URL)' : ''
describe.skipIf(skipped !== '')(`the status page in headless Chromium${skipped}`, () => {
  let s3: TestS3
  let browser: Browser
  let server: ChildProcess
  let worker: ChildProcess
  let base: string

  beforeAll(async () => {
    s3 = await startS3()
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
    await createStatementsTable(pool, TABLE, ROWS)
    await pool.query(`drop table if exists ${MISSING}`)
    await pool.end()
    const queue = `se-status-${Date.now()}`
    const env = {
      ...process.env,
      QUEUE: queue,
      REDIS_URL: redisUrl,
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: s3.bucket,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      EXPORT_TABLES: `${TABLE},${MISSING}`,
      PORT: '0',
    }
    worker = startRecipeWorker({ queue, redisUrl, s3, env: { PROGRESS_INTERVAL_MS: '100' } })
    server = spawn(process.execPath, [new URL('../examples/status-page/server.mjs', import.meta.url).pathname], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    base = await new Promise<string>((resolve, reject) => {
      server.stdout!.on('data', (d: Buffer) => {
        const m = /listening on (\d+)/.exec(d.toString())
        if (m) resolve(`http://127.0.0.1:${m[1]}`)
      })
      server.once('exit', (code) => reject(new Error(`the status page server exited with ${code}`)))
    })
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] })
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    for (const child of [server, worker]) {
      if (!child || child.exitCode !== null) continue
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
      child.kill('SIGKILL')
    }
    await s3?.close()
  })

  /** Starts an export from the home page's form, as a person does: the page lands on /exports/:id. */
  async function startExport(page: Page, table: string): Promise<string> {
    await page.goto(`${base}/`)
    await page.selectOption('#table', table)
    await Promise.all([page.waitForURL(/\/exports\/[\w-]+$/), page.click('#start')])
    return page.url()
  }

  it('the bar moves, every tab follows, and the download button saves the export under its name', async () => {
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 720, height: 420 } })
    const page = await context.newPage()
    const jobUrl = await startExport(page, TABLE)
    const second = await context.newPage() // a second tab on the same job
    await second.goto(jobUrl)
    // The first tab in front again: a background tab renders no frames (a screenshot of it waits forever).
    await page.bringToFront()

    const screenshot = process.env.UPDATE_SCREENSHOTS === '1' ? DOCS_SCREENSHOT : join(await tempDir(), 'status-page.png')
    // The bar's values while it runs, read as the page shows them.
    const seen = new Set<number>()
    let shot = false
    const deadline = Date.now() + 90_000 // a page that never ends says what it shows instead of timing out silently
    while (!(await page.locator('#download, #error').count())) {
      if (Date.now() > deadline) throw new Error(`no end after 90 s; the page shows: ${await page.locator('body').innerText()}`)
      const value = await page
        .locator('progress')
        .evaluate((bar) => (bar as unknown as { value: number }).value, undefined, { timeout: 2000 })
        .catch(() => undefined) // the page reloads itself at the end
      if (value !== undefined) seen.add(Math.round(value))
      if (!shot && value !== undefined && value > 20 && value < 80) {
        await page.screenshot({ path: screenshot })
        shot = true
      }
      await page.waitForTimeout(25)
    }
    expect(await page.locator('#error').count(), await page.locator('body').innerText()).toBe(0)
    expect(seen.size).toBeGreaterThanOrEqual(3)
    expect([...seen].some((v) => v > 0 && v < 100)).toBe(true)
    expect(shot).toBe(true)
    expect((await readFile(screenshot)).subarray(1, 4).toString()).toBe('PNG')
    expect(await page.locator('#status').textContent()).toBe(`Done: ${ROWS.toLocaleString('en')} rows.`)
    // The other tab too (saying what it shows if not), once in front: a browser may hold back a
    // background tab's events.
    await second.bringToFront()
    await expect
      .poll(() => second.locator('#download').count(), { timeout: 30_000, message: `the second tab shows: ${await second.locator('body').innerText()}` })
      .toBe(1)

    const jobId = jobUrl.split('/').at(-1)
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')])
    expect(download.suggestedFilename()).toBe(`${TABLE}-${jobId}.csv.gz`)
    const saved = join(await tempDir(), download.suggestedFilename())
    await download.saveAs(saved)
    const bytes = await readFile(saved)
    expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]) // what the name promises: gzip
    expectSameBytes(gunzipSync(bytes), await tableCsv(TABLE)) // every row, in order
    await context.close()
  }, 120_000)

  it('a failing export says why in plain words and offers to try again; without JavaScript the page refreshes itself', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await startExport(page, MISSING)
    // The page reloads itself when the job fails: wait for the error it then shows (say what it showed instead).
    await page
      .locator('#error')
      .waitFor({ timeout: 60_000 })
      .catch(async (error: Error) => {
        throw new Error(`no error on the page; it shows: ${await page.locator('body').innerText()}`, { cause: error })
      })
    expect(await page.locator('#error').textContent()).toContain(`relation "${MISSING}" does not exist`)
    expect(await page.locator('#error').textContent()).toMatch(/^The export failed: /)
    expect(await page.locator('#retry').textContent()).toBe('Try again')
    await context.close()

    const plain = await browser.newContext({ javaScriptEnabled: false })
    const noScript = await plain.newPage()
    const jobUrl = await startExport(noScript, TABLE) // a form post and a redirect: no script needed
    expect(await noScript.locator('noscript').innerHTML()).toContain('http-equiv="refresh"')
    await expect.poll(() => noScript.locator('#download').count(), { timeout: 60_000, interval: 500 }).toBe(1)
    expect(noScript.url()).toBe(jobUrl)
    await plain.close()
  }, 120_000)
})
