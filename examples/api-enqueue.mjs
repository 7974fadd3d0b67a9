// Recipe: the API side. POST /exports enqueues an export job and answers { jobId } at once; the
// worker (bullmq-worker.mjs) does the work. GET /exports/:id reports status, progress and, when
// done, the presigned download URL. The API never streams the export itself.
//
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3000 node examples/api-enqueue.mjs
//   curl -XPOST localhost:3000/exports -d '{"table":"statements","format":"csv"}'
//   curl localhost:3000/exports/1
import { createServer } from 'node:http'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'

const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null })
const queue = new Queue(process.env.QUEUE ?? 'exports', { connection })
const TABLES = new Set((process.env.EXPORT_TABLES ?? 'statements').split(','))

const json = (res, status, body) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))

const server = createServer(async (req, res) => {
  try {
    if (req.method === 'POST' && req.url === '/exports') {
      let body = ''
      for await (const chunk of req) body += chunk
      const { table, format = 'csv' } = JSON.parse(body || '{}')
      // Only tables you allow: the name reaches SQL (quoted as an identifier, but still yours to vet).
      if (!TABLES.has(table) || !['csv', 'jsonl'].includes(format)) return json(res, 400, { error: 'unknown table or format' })
      const job = await queue.add(
        'export',
        { table, format, gzip: true },
        {
          attempts: 3, // a worker that dies is followed by another attempt, which resumes
          backoff: { type: 'exponential', delay: 5_000 },
          removeOnComplete: { age: 86_400 },
        },
      )
      return json(res, 202, { jobId: job.id })
    }
    const match = /^\/exports\/([\w-]+)$/.exec(req.url ?? '')
    if (req.method === 'GET' && match) {
      const job = await queue.getJob(match[1])
      if (!job) return json(res, 404, { error: 'no such export' })
      const status = await job.getState()
      return json(res, 200, {
        jobId: job.id,
        status,
        progress: job.progress || null,
        ...(status === 'completed' ? { url: job.returnvalue.url, rows: job.returnvalue.rows, bytes: job.returnvalue.bytes } : {}),
        ...(status === 'failed' ? { error: job.failedReason } : {}),
      })
    }
    json(res, 404, { error: 'not found' })
  } catch (error) {
    json(res, 500, { error: error.message })
  }
})

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => console.log(`listening on ${server.address().port}`))
const stop = async () => {
  server.close()
  await queue.close()
  await connection.quit()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
