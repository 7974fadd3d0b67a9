// Lambda suite: 1M rows of a Postgres table -> csv -> gzip -> one S3 object through the recipe's
// SQS-triggered handler (examples/sqs-lambda.mjs), once in one invocation and once continued over
// short invocations, each a fresh process (a cold start) fed from a real SQS-compatible server
// (fauxqs) on loopback. Needs DATABASE_URL.
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs'
import { startFauxqs } from 'fauxqs'
import pg from 'pg'
import { createStatementsTable } from '../examples/statements.mjs'
import { fmt, machine, median, runChildAsync, startTestS3, writeSection } from './lib.mjs'

const ROWS = Number(process.env.LAMBDA_ROWS ?? 2_000_000)
const TABLE = 'bench_lambda'
const repeat = Number(process.env.BENCH_REPEAT ?? 3)
// The continued runs' invocations each export for about this long before handing on.
const SLICES_MS = [1000, 4000]
const MARGIN_MS = 60_000

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
await createStatementsTable(pool, TABLE, ROWS)
await pool.query('drop table if exists stream_export_continuations')
const s3 = await startTestS3('bench')
const server = await startFauxqs({ port: 0, logger: false })
const sqs = new SQSClient({ endpoint: server.address, region: 'us-east-1', credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } })
const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'bench-exports', Attributes: { VisibilityTimeout: '900' } }))).QueueUrl
const env = {
  S3_ENDPOINT: s3.endpoint,
  S3_BUCKET: 'bench',
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  SQS_ENDPOINT: server.address,
  QUEUE_URL: queueUrl,
  EXPORT_MARGIN_MS: String(MARGIN_MS),
}
const script = new URL('lambda-invoke.mjs', import.meta.url).pathname

// Runs a job to its end as the event source mapping would (receive, invoke, delete; one at a
// time): each invocation in a fresh process (cold), or all in one process (warm).
async function runJob(jobId, timeoutMs, warm) {
  await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ jobId, table: TABLE }) }))
  const started = performance.now()
  const runs = []
  if (warm) runs.push(await runChildAsync(script, ['warm', timeoutMs], env))
  else
    for (;;) {
      const { Messages } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 0 }))
      if (!Messages?.length) break
      const [m] = Messages
      const event = { Records: [{ messageId: m.MessageId, body: m.Body, attributes: { ApproximateReceiveCount: '1' } }] }
      runs.push(await runChildAsync(script, ['cold', timeoutMs, JSON.stringify(event)], env))
      await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }))
    }
  const sum = (f) => runs.reduce((total, i) => total + f(i), 0)
  const ms = performance.now() - started
  return { ms, invocations: sum((i) => i.invocations), handlerMs: sum((i) => i.ms), rssMb: Math.max(...runs.map((i) => i.rssMb)) }
}

// The continued runs: [hand on after ms, warm].
const CONTINUED = [
  [1000, false],
  [4000, false],
  [1000, true],
  [4000, true],
]
const whole = []
const continued = CONTINUED.map(() => [])
for (let round = 0; round < repeat; round++) {
  whole.push(await runJob(`whole-${round}`, 15 * 60_000, false))
  for (const [i, [slice, warm]] of CONTINUED.entries()) continued[i].push(await runJob(`continued-${slice}-${warm}-${round}`, MARGIN_MS + slice, warm))
}
const w = median(whole)
const runs = continued.map((results, i) => {
  const c = median(results)
  const [slice, warm] = CONTINUED[i]
  const overheadMs = (c.ms - w.ms) / (c.invocations - w.invocations)
  const handlerOverheadMs = (c.handlerMs - w.handlerMs) / (c.invocations - w.invocations)
  console.error(
    `${slice} ms slices, ${warm ? 'warm' : 'cold'}: ${fmt.s(c.ms)} s over ${c.invocations} (${fmt.x(w.ms / c.ms)} of ${fmt.s(w.ms)} s); ${overheadMs.toFixed(0)} ms per invocation (${handlerOverheadMs.toFixed(0)} in the handler)`,
  )
  return { ...c, slice, warm, overheadMs, handlerOverheadMs }
})
// Per hand-on, from the runs with the most of them (a run with one or two carries the machine's
// noise between rounds on that one or two).
const most = (warm) => runs.filter((r) => r.warm === warm).sort((a, b) => b.invocations - a.invocations)[0].overheadMs
const coldOverheadMs = most(false)
const warmOverheadMs = most(true)
const spread = `${fmt.s(Math.min(...whole.map((r) => r.ms)))}-${fmt.s(Math.max(...whole.map((r) => r.ms)))}`
await sqs.destroy()
await server.stop()
await s3.close()
await pool.query(`drop table ${TABLE}`)
await pool.end()

// An invocation of 15 minutes that exports at this run's speed, with this run's overheads.
const perInvocationRows = (15 * 60_000 - MARGIN_MS) * (ROWS / w.handlerMs)
const share = (overhead) => (15 * 60_000 - MARGIN_MS) / (15 * 60_000 - MARGIN_MS + overhead)
const rows = fmt.int(ROWS)

writeSection(
  'lambda',
  `
## Lambda continuation: ${rows} rows, Postgres -> csv -> gzip -> S3, in one invocation and continued

Run: \`npm run bench -- lambda\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
The recipe's handler (examples/sqs-lambda.mjs: \`postgresKeysetSource\` on \`id\`, \`csv()\`, gzip,
8 MiB parts, \`postgresContinuationStore\`) fed from fauxqs (an SQS-compatible server) on loopback;
S3 is s3rver with the test suite's middleware, PostgreSQL local. "One invocation": a 15-minute
timeout, nothing continued. "Continued": each invocation hands on a set time after it starts (its
part then ends at the next row past 5 MiB), each in a fresh process ("cold": Node, the imports and
a cold JIT every time) or all in one process ("warm", as Lambda reuses a container). ${repeat}
rounds, interleaved; medians.

| ${rows} rows | invocations | wall s | rows/s | ratio | extra ms per invocation (in the handler) | peak RSS MB |
|---|---:|---:|---:|---:|---:|---:|
| one invocation | ${w.invocations} | ${fmt.s(w.ms)} (${spread}) | ${fmt.int(ROWS / (w.ms / 1000))} | 1.00x | | ${w.rssMb.toFixed(0)} |
${runs
  .map(
    (c) =>
      `| continued, ${c.warm ? 'warm' : 'cold'}, handing on after ${fmt.s(c.slice)} s | ${c.invocations} | ${fmt.s(c.ms)} | ${fmt.int(ROWS / (c.ms / 1000))} | **${fmt.x(w.ms / c.ms)}** | ${c.overheadMs.toFixed(0)} (${c.handlerOverheadMs.toFixed(0)}) | ${c.rssMb.toFixed(0)} |`,
  )
  .join('\n')}

What an invocation handed on costs: cold, the process start and the imports, then in the handler
a cold JIT; warm or cold, the store's read and claim, the key's upload listing, a connection and a
query, and at its end the last part's upload, which no longer overlaps the next rows, and the
continuation message. Invocations of seconds show it (and a run with one or two hand-ons carries
the rounds' noise, the range above, on them); with the cost per hand-on of the runs that have the
most (${coldOverheadMs.toFixed(0)} ms cold, ${warmOverheadMs.toFixed(0)} ms warm), a 15-minute invocation (60 s margin), which
exports about ${fmt.int(perInvocationRows)} rows here before handing on, makes a continued export
**${share(coldOverheadMs).toFixed(4)}x** (cold) or **${share(warmOverheadMs).toFixed(4)}x** (warm) of an uninterrupted one.
`,
)
