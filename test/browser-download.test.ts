// A person clicks the presigned link of a gzipped export in a real browser (Debian's Chromium,
// driven by playwright-core): the saved file must be what its name says.
import { readFile } from 'node:fs/promises'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, exportKey, exportStream, fromIterable, presignDownload, s3Sink } from '../src/index.js'
import { statementRow, statements } from '../examples/statements.mjs'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

const executablePath = process.env.CHROMIUM_PATH

describe.skipIf(!executablePath)('a download in headless Chromium', () => {
  let s3: TestS3
  let browser: Browser
  beforeAll(async () => {
    s3 = await startS3()
    browser = await chromium.launch({
      executablePath,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
  })
  afterAll(async () => {
    await browser?.close()
    await s3?.close()
  })

  it('the presigned link of a default gzipped export saves statements.csv.gz holding gzip bytes of every row', async () => {
    const rows = 20_000
    const key = exportKey({ jobId: 'browser', format: 'csv', gzip: true })
    await exportStream({ source: fromIterable(statements(rows)), format: csv(), gzip: true, sink: s3Sink({ client: s3.client, bucket: s3.bucket, key }) })
    const url = await presignDownload(s3.client, { bucket: s3.bucket, key, expiresIn: 600, filename: 'statements.csv.gz' })

    // The link sits on a page, as in an app's "your export is ready" screen.
    const server = createServer((_req, res) => res.end(`<!doctype html><a id="download" href="${url.replace(/&/g, '&amp;')}">Download</a>`))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const page = await browser.newPage({ acceptDownloads: true })
    try {
      await page.goto(`http://127.0.0.1:${(server.address() as { port: number }).port}/`)
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')])
      expect(download.suggestedFilename()).toBe('statements.csv.gz')
      const saved = join(await tempDir(), download.suggestedFilename())
      await download.saveAs(saved)
      const bytes = await readFile(saved)
      expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]) // what the name promises: gzip
      const records = parse(gunzipSync(bytes), { columns: true }) as Array<Record<string, string>>
      expect(records).toHaveLength(rows)
      expect(records[rows - 1].id).toBe(String(statementRow(rows - 1).id))
    } finally {
      await page.close()
      server.close()
    }
  }, 60_000)
})
