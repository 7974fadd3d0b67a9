// Lambda invocations for the lambda suite, of the recipe's handler (examples/sqs-lambda.mjs), each
// with a context whose time runs out after <timeout ms>.
//   node bench/lambda-invoke.mjs cold <timeout ms> <event json>: one invocation in a fresh process
//     (a cold start: Node and the imports);
//   node bench/lambda-invoke.mjs warm <timeout ms>: every invocation of the queue's messages in this
//     one process, one after another (a warm container), receiving and deleting them itself.
import { randomUUID } from 'node:crypto'
import { DeleteMessageCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs'

const started = performance.now()
const [mode, timeoutMs, event] = process.argv.slice(2)
const { handler } = await import('../examples/sqs-lambda.mjs')
const initMs = performance.now() - started
const invoke = async (records) => {
  const deadline = Date.now() + Number(timeoutMs)
  const response = await handler({ Records: records }, { awsRequestId: randomUUID(), getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()) })
  if (response.batchItemFailures.length > 0) throw new Error('an invocation failed')
}
let invocations = 0
const begun = performance.now()
if (mode === 'cold') {
  await invoke(JSON.parse(event).Records)
  invocations = 1
} else {
  const sqs = new SQSClient({ endpoint: process.env.SQS_ENDPOINT, region: 'us-east-1' })
  const QueueUrl = process.env.QUEUE_URL
  for (;;) {
    const { Messages } = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 0 }))
    if (!Messages?.length) break
    const [m] = Messages
    await invoke([{ messageId: m.MessageId, body: m.Body, attributes: { ApproximateReceiveCount: '1' } }])
    await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: m.ReceiptHandle }))
    invocations++
  }
}
const { maxRSS } = process.resourceUsage()
console.log(JSON.stringify({ invocations, initMs, ms: performance.now() - begun, rssMb: maxRSS / 1024 }))
process.exit(0)
