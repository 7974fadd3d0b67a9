// Recipe "customer exports end to end", the API: POST /exports enqueues a month's statements for
// every customer (worker.mjs runs it); GET /exports/:id is its page: each customer's file, how long
// its link works and when it is deleted, or that it was; GET /downloads/:entry is the link the
// e-mails carry: it signs a fresh S3 link at each click (never past the file's expiry), counts the
// download in the export log, and answers 410 Gone once the file is deleted.
//
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://... S3_BUCKET=exports PORT=3000 DOWNLOAD_SECRET=... \
//     node examples/customer-exports/server.mjs
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { S3Client } from '@aws-sdk/client-s3'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import pg from 'pg'
import { exportIdOf, postgresExportLog, presignEntry } from 'stream-export'

const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null })
const queue = new Queue(process.env.QUEUE ?? 'customer-exports', { connection })
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 })
const log = postgresExportLog({ pool, table: process.env.LOG_TABLE ?? 'stream_export_log' })
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)

// The links carry an HMAC of the entry's id (worker.mjs makes them): a link nobody gave you is refused.
const secret = process.env.DOWNLOAD_SECRET
if (!secret) throw new Error('Set DOWNLOAD_SECRET (the same for worker.mjs): the key of the download links')
const tokenOf = (entryId) => createHmac('sha256', secret).update(entryId).digest('base64url')
const validToken = (entryId, token) => {
  const expected = Buffer.from(tokenOf(entryId))
  const given = Buffer.from(String(token ?? ''))
  return expected.length === given.length && timingSafeEqual(expected, given)
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const when = (date) =>
  date
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC')
const page = (title, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem } td, th { padding: .2rem .6rem; text-align: left }</style>
</head><body><h1>${escape(title)}</h1>${body}</body></html>`
const html = (res, status, text) => res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(text)

/** A file's line on the page: its download, or when it was (or will be) deleted. */
function fileRow(entry, now) {
  const name = escape(entry.filename ?? entry.keys[0])
  const rows = entry.rows.toLocaleString('en')
  if (entry.replacedBy) return `<tr class="expired"><td>${name}</td><td>${rows} rows</td><td>Replaced by a newer export.</td></tr>`
  if (entry.deletedAt || (entry.expiresAt && entry.expiresAt <= now))
    return `<tr class="expired"><td>${name}</td><td>${rows} rows</td><td>Expired on ${when(entry.expiresAt ?? entry.deletedAt)}: the file was deleted.</td></tr>`
  const link = `<a class="download" href="/downloads/${encodeURIComponent(entry.id)}?token=${tokenOf(entry.id)}">Download</a>`
  return `<tr><td>${name}</td><td>${rows} rows</td><td>${link}${entry.expiresAt ? ` (available until ${when(entry.expiresAt)})` : ''}</td></tr>`
}

async function exportPage(job) {
  const state = await job.getState()
  const title = `Statements ${job.data.month}`
  if (state === 'failed') return page(title, `<p id="error">The export failed: ${escape(job.failedReason)}</p>`)
  if (state !== 'completed') return page(title, `<p id="status">Exporting… (${escape(state)})</p><meta http-equiv="refresh" content="2">`)
  const now = new Date()
  // (This page lists every customer's link: put it behind your app's login, for whoever asked.)
  const files = (await log.list(exportIdOf(job))).filter((entry) => entry.partition) // each customer's file
  return page(
    title,
    `<p id="status">Done: ${files.length} customers, each e-mailed their link.</p><table id="files">${files.map((e) => fileRow(e, now)).join('')}</table>`,
  )
}

async function readForm(req) {
  let body = ''
  for await (const chunk of req) body += chunk
  return (req.headers['content-type'] ?? '').includes('json') ? JSON.parse(body || '{}') : Object.fromEntries(new URLSearchParams(body))
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (req.method === 'POST' && url.pathname === '/exports') {
      const { month, requestedBy } = await readForm(req)
      if (!/^\d{4}-\d{2}$/.test(month ?? '')) return html(res, 400, page('Bad request', '<p>month must be YYYY-MM.</p>'))
      // Your API knows who asks (a session): here, what the form says.
      const job = await queue.add('statements', { month, requestedBy }, { attempts: 3, backoff: { type: 'exponential', delay: 5000 } })
      return res.writeHead(303, { location: `/exports/${job.id}` }).end()
    }
    const exportMatch = /^\/exports\/([\w-]+)$/.exec(url.pathname)
    if (req.method === 'GET' && exportMatch) {
      const job = await queue.getJob(exportMatch[1])
      return job ? html(res, 200, await exportPage(job)) : html(res, 404, page('Not found', '<p>No such export.</p>'))
    }
    const downloadMatch = /^\/downloads\/(.+)$/.exec(url.pathname)
    if (req.method === 'GET' && downloadMatch) {
      const entryId = decodeURIComponent(downloadMatch[1])
      if (!validToken(entryId, url.searchParams.get('token'))) return html(res, 404, page('Not found', '<p>No such file.</p>'))
      const entry = await log.get(entryId)
      if (!entry) return html(res, 404, page('Not found', '<p>No such file.</p>'))
      const now = new Date()
      const link = await presignEntry(s3, entry, 600, now) // ten minutes, never past the file's expiry
      if (!link && entry.replacedBy) return html(res, 410, page('Replaced', '<p id="expired">This file was replaced by a newer export.</p>'))
      if (!link) return html(res, 410, page('Expired', `<p id="expired">This file expired on ${when(entry.expiresAt ?? entry.deletedAt)} and was deleted.</p>`))
      await log.downloaded(entry.id, now)
      return res.writeHead(302, { location: link.url, 'cache-control': 'no-store' }).end()
    }
    html(res, 404, page('Not found', '<p>Nothing here.</p>'))
  } catch (error) {
    console.error(error)
    if (!res.headersSent) html(res, 500, page('Error', '<p>Something went wrong.</p>'))
    else res.end()
  }
})
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => console.log(`listening on ${server.address().port}`))

const stop = async () => {
  server.close()
  await queue.close()
  await pool.end()
  await connection.quit()
  s3.destroy()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
