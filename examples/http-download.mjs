// Recipe: stream a small export straight into an HTTP response (no S3, no queue).
//
//   DATABASE_URL=postgres://... node examples/http-download.mjs   then   curl -OJ localhost:3001/statements.csv
//
// Fine for exports that finish in seconds. For big ones use a job and S3 instead
// (api-enqueue.mjs + bullmq-worker.mjs): a response that streams for minutes hits load-balancer
// and proxy idle timeouts (often 60 s), ties an API process to one download, cannot resume, and
// pays your egress rather than S3's.
import { createServer } from 'node:http'
import pg from 'pg'
import { attachment, csv, exportStream, postgresSource } from 'stream-export'

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 })
const table = process.env.TABLE ?? 'statements'

const server = createServer(async (req, res) => {
  if (req.url !== '/statements.csv') return res.writeHead(404).end()
  res.writeHead(200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': attachment('statements.csv') })
  // A client that goes away aborts the export: the cursor is closed and the client released.
  const controller = new AbortController()
  res.once('close', () => res.writableFinished || controller.abort(new Error('client went away')))
  try {
    await exportStream({
      source: postgresSource({ pool, text: `select * from ${table} order by id limit 50000` }),
      format: csv(),
      sink: res, // any Writable is a sink
      signal: controller.signal,
    })
  } catch (error) {
    res.destroy(error) // headers are gone: cutting the connection tells the client the file is incomplete
  }
})
server.listen(Number(process.env.PORT ?? 3001), '127.0.0.1', () => console.log(`listening on ${server.address().port}`))
const stop = async () => {
  server.close()
  await pool.end()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
