// Recipe: "is my export done yet?" answered by a page. The API recipe (api-enqueue.mjs) with a
// status page on top: POST /exports enqueues and redirects to /exports/:id, a small HTML page with
// a real <progress> bar, rows, rate and ETA, updated live by Server-Sent Events (fed by BullMQ's
// QueueEvents through `sendExportEvents`), then a download button, or the error in plain words
// with a retry button. No framework, no build step; without JavaScript it refreshes itself.
// The worker is examples/bullmq-worker.mjs.
//
//   REDIS_URL=redis://127.0.0.1:6379 S3_BUCKET=exports PORT=3000 node examples/status-page/server.mjs
//   open http://127.0.0.1:3000/
import { createServer } from 'node:http'
import { S3Client } from '@aws-sdk/client-s3'
import { Queue, QueueEvents } from 'bullmq'
import { Redis } from 'ioredis'
import { presignDownload } from 'stream-export'
import { sendExportEvents } from 'stream-export/bullmq'

const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null })
const queueName = process.env.QUEUE ?? 'exports'
const queue = new Queue(queueName, { connection })
// One QueueEvents (one blocking connection) serves every open page.
const eventsConnection = connection.duplicate()
const queueEvents = new QueueEvents(queueName, { connection: eventsConnection })
queueEvents.setMaxListeners(0) // three listeners per open page
const s3 = new S3Client(
  process.env.S3_ENDPOINT ? { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' } : {},
)
const TABLES = (process.env.EXPORT_TABLES ?? 'statements').split(',')

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const number = (n) => (n === undefined || n === null ? '?' : Math.round(n).toLocaleString('en'))
const duration = (ms) => (ms >= 60_000 ? `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s` : `${Math.max(1, Math.round(ms / 1000))} s`)
const fileName = (job) => `${job.data.table}-${job.id}.${job.data.format === 'jsonl' ? 'jsonl' : 'csv'}.gz`

/** The line under the bar, in words (the page's script writes the same from each event). */
function progressText(state, p) {
  if (state === 'waiting' || state === 'delayed' || state === 'prioritized') return 'Waiting for a worker…'
  if (!p || p.rows === undefined) return 'Starting…'
  const parts = [p.totalRows ? `${number(p.rows)} of ${number(p.totalRows)} rows` : `${number(p.rows)} rows`]
  if (p.percent !== undefined) parts.push(`${p.percent.toFixed(0)}%`)
  if (p.rowsPerSecond) parts.push(`${number(p.rowsPerSecond)} rows/s`)
  if (p.etaMs !== undefined && p.percent !== undefined && p.percent < 100) parts.push(`about ${duration(p.etaMs)} left`)
  return parts.join(' · ')
}

const page = (title, body, head = '') => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>${head}
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem; color: #1b1b1b }
  progress { width: 100%; height: 1.5rem }
  .button { display: inline-block; padding: .6rem 1.2rem; border-radius: .4rem; border: 0; background: #1f5fbf; color: #fff; font: inherit; text-decoration: none; cursor: pointer }
  .button:focus { outline: 3px solid #f5b400; outline-offset: 2px }
  .error { color: #a40000 }
</style></head>
<body>${body}</body></html>`

function home() {
  const options = TABLES.map((t) => `<option>${escape(t)}</option>`).join('')
  return page(
    'Export your data',
    `<h1>Export your data</h1>
<form method="post" action="/exports">
  <p><label for="table">Data</label> <select id="table" name="table">${options}</select></p>
  <p><label for="format">Format</label> <select id="format" name="format"><option value="csv">CSV</option><option value="jsonl">JSON Lines</option></select></p>
  <p><button class="button" id="start">Start the export</button></p>
</form>`,
  )
}

async function statusPage(job) {
  const state = await job.getState()
  const p = job.progress || undefined
  const done = state === 'completed'
  const failed = state === 'failed'
  const percent = done ? 100 : (p?.percent ?? 0)
  const title = `Export ${job.id}: ${job.data.table}`
  let body = `<h1>${escape(title)}</h1>
<p><label for="bar">Progress</label></p>
<progress id="bar" max="100" value="${percent.toFixed(1)}" aria-describedby="status">${percent.toFixed(0)}%</progress>
<p id="status" role="status" aria-live="polite">${escape(done ? `Done: ${number(job.returnvalue.rows)} rows.` : failed ? 'Stopped.' : progressText(state, p))}</p>`
  if (done) {
    body += `<p><a class="button" id="download" href="/exports/${job.id}/download" download="${escape(fileName(job))}">Download ${escape(fileName(job))}</a></p>`
  } else if (failed) {
    body += `<p id="error" class="error" role="alert">The export failed: ${escape(job.failedReason)}</p>
<form method="post" action="/exports/${job.id}/retry"><button class="button" id="retry">Try again</button></form>`
  } else {
    // Live: Server-Sent Events move the bar; at the end the page is fetched again, finished.
    body += `<script>
const bar = document.getElementById('bar'), status = document.getElementById('status')
const number = (n) => (n === undefined || n === null ? '?' : Math.round(n).toLocaleString('en'))
const duration = (ms) => (ms >= 60000 ? Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s' : Math.max(1, Math.round(ms / 1000)) + ' s')
const show = (p) => {
  if (!p || p.rows === undefined) return
  if (p.percent !== undefined) { bar.value = p.percent; bar.textContent = p.percent.toFixed(0) + '%' }
  const parts = [p.totalRows ? number(p.rows) + ' of ' + number(p.totalRows) + ' rows' : number(p.rows) + ' rows']
  if (p.percent !== undefined) parts.push(p.percent.toFixed(0) + '%')
  if (p.rowsPerSecond) parts.push(number(p.rowsPerSecond) + ' rows/s')
  if (p.etaMs !== undefined && p.percent !== undefined && p.percent < 100) parts.push('about ' + duration(p.etaMs) + ' left')
  status.textContent = parts.join(' · ')
}
const events = new EventSource('/exports/${job.id}/events')
events.addEventListener('status', (e) => { const s = JSON.parse(e.data); show(s.progress); if (s.state === 'completed' || s.state === 'failed') location.reload() })
events.addEventListener('progress', (e) => show(JSON.parse(e.data)))
events.addEventListener('completed', () => { events.close(); location.reload() })
events.addEventListener('failed', () => { events.close(); location.reload() })
</script>`
  }
  // Without JavaScript the page refreshes itself until the export has finished.
  const head = done || failed ? '' : '<noscript><meta http-equiv="refresh" content="2"></noscript>'
  return page(title, body, head)
}

async function readForm(req) {
  let body = ''
  for await (const chunk of req) body += chunk
  return (req.headers['content-type'] ?? '').includes('json') ? JSON.parse(body || '{}') : Object.fromEntries(new URLSearchParams(body))
}

const html = (res, status, text) => res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(text)
const redirect = (res, location) => res.writeHead(303, { location }).end()

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (req.method === 'GET' && url.pathname === '/') return html(res, 200, home())
    if (req.method === 'POST' && url.pathname === '/exports') {
      const { table, format = 'csv' } = await readForm(req)
      // Only tables you allow: the name reaches SQL (quoted as an identifier, but still yours to vet).
      if (!TABLES.includes(table) || !['csv', 'jsonl'].includes(format)) return html(res, 400, page('Not available', '<p>That export is not available.</p>'))
      const job = await queue.add('export', { table, format, gzip: true }, { attempts: 1, removeOnComplete: { age: 86_400 }, removeOnFail: { age: 86_400 } })
      return redirect(res, `/exports/${job.id}`)
    }
    const match = /^\/exports\/([\w-]+)(\/events|\/download|\/retry)?$/.exec(url.pathname)
    const job = match ? await queue.getJob(match[1]) : undefined
    if (!match || !job) return html(res, 404, page('Not found', '<p>No such export.</p>'))
    const action = match[2]
    if (req.method === 'GET' && !action) return html(res, 200, await statusPage(job))
    if (req.method === 'GET' && action === '/events') {
      // Every tab on the job gets its own stream; the presigned URL stays out of it.
      return await sendExportEvents(res, { queue, queueEvents, jobId: job.id, result: (r) => ({ rows: r?.rows, bytes: r?.bytes }) })
    }
    if (req.method === 'GET' && action === '/download' && (await job.getState()) === 'completed') {
      // Signed when clicked, with the file name the person expects (not the object key's).
      const { bucket, key } = job.returnvalue.location
      return res.writeHead(302, { location: await presignDownload(s3, { bucket, key, expiresIn: 600, filename: fileName(job) }) }).end()
    }
    if (req.method === 'POST' && action === '/retry' && (await job.getState()) === 'failed') {
      await job.retry()
      return redirect(res, `/exports/${job.id}`)
    }
    html(res, 404, page('Not found', '<p>Nothing here.</p>'))
  } catch (error) {
    if (!res.headersSent) html(res, 500, page('Error', `<p class="error">${escape(error.message)}</p>`))
    else res.end()
  }
})

await queueEvents.waitUntilReady()
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => console.log(`listening on ${server.address().port}`))
const stop = async () => {
  server.closeAllConnections() // open event streams would keep close() waiting
  server.close()
  await queueEvents.close()
  await queue.close()
  await eventsConnection.quit()
  await connection.quit()
  s3.destroy()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
