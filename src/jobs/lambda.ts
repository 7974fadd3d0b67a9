// The SQS-triggered Lambda export (stream-export/lambda): a job exported over as many invocations
// as it needs into one object. Each invocation runs the processor's attempt (processor.ts) with a
// deadline: near it the export ends its part at a row boundary, the checkpoint is stored, and a
// continuation message hands the rest to the next invocation. The job's state lives in a
// ContinuationStore, written by compare-and-set: a duplicate message finds its step taken or done.
import { randomUUID } from 'node:crypto'
import { ExportError, invalidOption } from '../core/errors.js'
import { loadOptional } from '../core/optional.js'
import { checkFunction, checkObject, checkPositiveInteger, checkString, optionNames } from '../core/options.js'
import type { ContinuationStore } from './continuation-store.js'
import { abortFailedExport, createJobRunner } from './processor.js'
import type { ExportJob, ExportJobResult, ExportProcessorOptions } from './types.js'

/** One message of an SQS event, as Lambda hands it over. */
export interface SqsRecord {
  messageId: string
  body: string
  attributes?: { ApproximateReceiveCount?: string }
}

/** The event of an SQS-triggered Lambda. */
export interface SqsEvent {
  Records?: SqsRecord[]
}

/** The part of Lambda's context the handler uses. */
export interface LambdaContext {
  getRemainingTimeInMillis(): number
  awsRequestId?: string
}

/** A partial batch response (the event source mapping's `ReportBatchItemFailures`). */
export interface SqsBatchResponse {
  batchItemFailures: Array<{ itemIdentifier: string }>
}

export interface LambdaExportHandlerOptions extends Omit<ExportProcessorOptions, 'progressIntervalMs'> {
  /** Where a job's state lives between invocations (`postgresContinuationStore({ pool })`, or DynamoDB: docs/lambda.md). */
  store: ContinuationStore
  /** An SQS client (`@aws-sdk/client-sqs`) and the queue this function reads: continuation messages go there. */
  sqs?: { send(command: never): Promise<unknown> }
  queueUrl?: string
  /** Instead of `sqs`: sends the body of a continuation message (another queue, a test), after `delaySeconds` when given. */
  send?(body: string, delaySeconds?: number): Promise<unknown>
  /**
   * The queue's redrive policy's `maxReceiveCount`: on a message's last receive, a failure aborts
   * the job's upload (and notifies `export.failed`) before SQS moves the message to its dead-letter queue.
   */
  maxReceiveCount: number
  /**
   * Time left (ms) at which the export ends its part at the next row once the part holds 5 MiB, and
   * hands on; at a quarter of it an export still running stops as a crash would (that part's rows
   * are read again). Default 60000. Records not begun by then are handed on as they came.
   */
  marginMs?: number
  /** A first message's job id (the object's key, the state's): default its body's `jobId`, else its messageId. */
  jobId?(body: Record<string, unknown>, record: SqsRecord): string
  /** Told of each message that failed (it is retried, then dead-lettered). Default: `console.error`. */
  onError?(error: unknown, record: SqsRecord): void
}

const NAMES = optionNames<LambdaExportHandlerOptions>({
  s3: true,
  bucket: true,
  prefix: true,
  resolve: true,
  urlExpiresIn: true,
  partSize: true,
  notify: true,
  onComplete: true,
  log: true,
  expiryTag: true,
  now: true,
  store: true,
  sqs: true,
  queueUrl: true,
  send: true,
  maxReceiveCount: true,
  marginMs: true,
  jobId: true,
  onError: true,
})

/** What the store keeps of a job. */
interface JobRecord {
  /** The step the job is at: the message whose `exportContinuation.seq` is this runs it. */
  seq: number
  /** An invocation runs the step until `until` (ms since the epoch): a duplicate waits. */
  lease?: { owner: string; until: number }
  /** The message of step `seq` was sent. */
  sent?: boolean
  /** The processor's state in its job's data (checkpoint, partitions, commit marker). */
  data: Pick<ExportJob['data'], 'exportCheckpoint' | 'exportPartitions' | 'exportCommitted'>
  /** Invocations in a row that stopped with nothing more to continue from. */
  stalled?: number
  completed?: { rows: number; bytes: number; at: number }
  failed?: { code: string; message: string }
}

/** The body field of a continuation message (the rest is the first message's body). */
const FIELD = 'exportContinuation'
// A lease outlives its invocation's deadline by this much (clocks of two invocations differ).
const LEASE_SLACK_MS = 1000
// Invocations in a row that may end without a part landed before the job fails.
const MAX_STALLED = 3

/**
 * An SQS-triggered Lambda handler that runs exports of any size: each message is a job (its body
 * goes to `resolve` as the job's data); an export that nears the invocation's deadline stops at a
 * part boundary and continues in the next invocation, on the same multipart upload, until it
 * completes; then its link and notifications are delivered as by `createExportProcessor`.
 *
 * @example export const handler = createLambdaExportHandler({ s3, bucket: 'exports', sqs, queueUrl, store: postgresContinuationStore({ pool }), maxReceiveCount: 3, resolve })
 */
export function createLambdaExportHandler(options: LambdaExportHandlerOptions): (event: SqsEvent, context: LambdaContext) => Promise<SqsBatchResponse> {
  checkObject('options', options, NAMES)
  const { store, sqs, queueUrl, send, maxReceiveCount, marginMs = 60_000, jobId: jobIdOf = defaultJobId, onError = logError, ...processor } = options
  if (typeof store?.get !== 'function' || typeof store.put !== 'function') invalidOption('store', 'a ContinuationStore (postgresContinuationStore)', store)
  checkPositiveInteger('maxReceiveCount', maxReceiveCount)
  checkPositiveInteger('marginMs', marginMs)
  checkFunction('jobId', jobIdOf)
  checkFunction('onError', onError)
  let sendBody: (body: string, delaySeconds?: number) => Promise<unknown>
  if (send !== undefined) {
    if (sqs !== undefined || queueUrl !== undefined) invalidOption('send', 'unset with `sqs` and `queueUrl`', send)
    checkFunction('send', send)
    sendBody = send
  } else {
    if (typeof sqs?.send !== 'function') invalidOption('sqs', 'an SQSClient (with `queueUrl`), or `send`', sqs)
    checkString('queueUrl', queueUrl)
    const { SendMessageCommand } = loadOptional<typeof import('@aws-sdk/client-sqs')>('@aws-sdk/client-sqs', '@aws-sdk/client-sqs')
    sendBody = (body, DelaySeconds) => sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body, DelaySeconds }) as never)
  }
  const run = createJobRunner({ ...processor, progressIntervalMs: 1000 })

  async function handle(record: SqsRecord, context: LambdaContext): Promise<'done' | 'retry'> {
    const { data, seq, id: given } = readBody(record)
    const id = given ?? jobIdOf(data, record)
    checkString('jobId', id)
    const message = (step: number) => JSON.stringify({ ...data, [FIELD]: { jobId: id, seq: step } })
    // Too little time to begin: the message goes back as it came, and this one is done.
    if (context.getRemainingTimeInMillis() <= marginMs) return (void (await sendBody(message(seq))), 'done')

    const read = await store.get(id)
    let version = read?.version ?? 0
    let state: JobRecord = read ? parseRecord(read.value, id) : { seq: 0, data: {} }
    if (!read && seq > 0) throw new ExportError('ERR_STATE', 'state', `The store has no record of export ${id}, whose step ${seq} this message is`)
    if (state.completed || state.failed) return 'done' // a duplicate of a finished job's message
    if (state.seq > seq) {
      // A duplicate of a step that has run: its continuation is sent once more if it may not have been.
      if (state.seq === seq + 1 && !state.sent) await sendBody(message(state.seq))
      return 'done'
    }
    if (state.seq < seq) throw new ExportError('ERR_STATE', 'state', `Export ${id} is at step ${state.seq} in the store, behind this message's ${seq}`)
    // Another invocation runs this step (this is a duplicate, or its own message back early): the
    // message comes back when that one's time is up, as a new one (this receive is not counted against it).
    if (state.lease && state.lease.until > Date.now()) return (void (await sendBody(message(seq), delayUntil(state.lease.until))), 'done')
    const write = async (next: JobRecord): Promise<boolean> => {
      if (!(await store.put(id, version + 1, JSON.stringify(next)))) return false
      version++
      state = next
      return true
    }
    const owner = context.awsRequestId ?? randomUUID()
    if (!(await write({ ...state, lease: { owner, until: Date.now() + context.getRemainingTimeInMillis() + LEASE_SLACK_MS } }))) return 'retry'
    const mustWrite = async (next: JobRecord) => {
      if (!(await write(next))) throw new ExportError('ERR_STATE', 'state', `Another invocation took over export ${id}: this one stops`)
    }

    const receives = Number(record.attributes?.ApproximateReceiveCount ?? 1)
    const job: ExportJob = {
      id,
      data: { ...data, ...state.data },
      attemptsMade: receives - 1,
      opts: { attempts: maxReceiveCount },
      updateProgress: async () => {},
      async updateData(next) {
        const { exportCheckpoint, exportPartitions, exportCommitted } = next as ExportJob['data']
        // The processor lets go of its commit marker once the job is done: the job is complete.
        const done = state.data.exportCommitted !== undefined && !exportCommitted && !exportCheckpoint && !exportPartitions
        const { rows, bytes } = state.data.exportCommitted ?? { rows: 0, bytes: 0 }
        await mustWrite(
          done ? { seq, data: {}, completed: { rows, bytes, at: Date.now() } } : { ...state, data: { exportCheckpoint, exportPartitions, exportCommitted } },
        )
        job.data = next
      },
    }
    const before = progressOf(state.data)
    const pause = new AbortController()
    const stop = new AbortController()
    const left = context.getRemainingTimeInMillis()
    const timers = [setTimeout(() => pause.abort(), Math.max(0, left - marginMs)), setTimeout(() => stop.abort(), Math.max(0, left - marginMs / 4))]
    let outcome: ExportJobResult | { paused: true }
    try {
      outcome = await run(job, { pause: pause.signal, stop: stop.signal })
    } catch (error) {
      // (On the last receive the processor has aborted the upload and sent export.failed.)
      const last = receives >= maxReceiveCount
      const { code = 'ERR_UNKNOWN', message: text } = error as ExportError
      await write({ ...state, lease: undefined, ...(last ? { failed: { code, message: text } } : {}) }).catch(() => {})
      throw error
    } finally {
      for (const timer of timers) clearTimeout(timer)
    }
    if (!('paused' in outcome)) return 'done' // completed: updateData wrote so

    // Paused (or stopped) at the deadline: the next step continues from the checkpoint.
    const stalled = progressOf(state.data) > before ? 0 : (state.stalled ?? 0) + 1
    if (stalled >= MAX_STALLED) {
      // It would loop: the job fails (on the last receive, its upload is aborted).
      const error = new ExportError(
        'ERR_ABORTED',
        'export',
        `Export ${id} stopped at its deadline ${stalled} times in a row without a part landed: a continued export needs a keyset source and a text format (docs/lambda.md), and an invocation long enough to upload a 5 MiB part`,
      )
      const last = receives >= maxReceiveCount
      if (last) {
        await abortFailedExport(processor.s3, job)
        await Promise.resolve(processor.notify?.({ event: 'export.failed', jobId: id, error: { code: error.code, message: error.message } })).catch(() => {})
      }
      await write({ ...state, lease: undefined, stalled, ...(last ? { failed: { code: error.code, message: error.message } } : {}) }).catch(() => {})
      throw error
    }
    const next: JobRecord = { seq: seq + 1, data: state.data, sent: false, ...(stalled > 0 ? { stalled } : {}) }
    await mustWrite(next)
    await sendBody(message(seq + 1))
    await write({ ...next, sent: true }).catch(() => {}) // (unsaved, a duplicate of this message sends it again: harmless)
    return 'done'
  }

  return async (event, context) => {
    const batchItemFailures: SqsBatchResponse['batchItemFailures'] = []
    for (const record of event.Records ?? []) {
      try {
        if ((await handle(record, context)) === 'retry') batchItemFailures.push({ itemIdentifier: record.messageId })
      } catch (error) {
        onError(error, record)
        batchItemFailures.push({ itemIdentifier: record.messageId })
      }
    }
    return { batchItemFailures }
  }
}

/** A message's body: the job's data and, in a continuation, its job id and step. */
function readBody(record: SqsRecord): { data: Record<string, unknown>; seq: number; id?: string } {
  let body: unknown
  try {
    body = JSON.parse(record.body)
  } catch (error) {
    throw new ExportError('ERR_INVALID_OPTION', 'options', `Message ${record.messageId}'s body is not JSON: ${(error as Error).message}`, { cause: error })
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ExportError('ERR_INVALID_OPTION', 'options', `Message ${record.messageId}'s body is not a JSON object`)
  const { [FIELD]: continuation, ...data } = body as Record<string, unknown>
  if (continuation === undefined) return { data, seq: 0 }
  const { jobId, seq } = continuation as { jobId?: unknown; seq?: unknown }
  if (typeof jobId !== 'string' || !Number.isSafeInteger(seq) || (seq as number) < 0)
    throw new ExportError('ERR_INVALID_OPTION', 'options', `Message ${record.messageId}'s ${FIELD} is not { jobId, seq } of this library`)
  return { data, seq: seq as number, id: jobId }
}

function parseRecord(value: string, id: string): JobRecord {
  try {
    return JSON.parse(value) as JobRecord
  } catch (error) {
    throw new ExportError('ERR_STATE', 'state', `The store's record of export ${id} is not JSON`, { cause: error })
  }
}

/** How far a job's export has come, as its checkpoint says. */
const progressOf = (data: JobRecord['data']): number => (data.exportCheckpoint?.rows ?? 0) + (data.exportPartitions?.checkpoint.rows ?? 0)

/** Seconds from now to `until` (SQS delays a message 900 s at most). */
const delayUntil = (until: number): number => Math.min(900, Math.max(1, Math.ceil((until - Date.now()) / 1000)))

const defaultJobId = (body: Record<string, unknown>, record: SqsRecord): string =>
  typeof body.jobId === 'string' || typeof body.jobId === 'number' ? String(body.jobId) : record.messageId

const logError = (error: unknown, record: SqsRecord): void => {
  const { code, message } = error as ExportError
  console.error(`stream-export: message ${record.messageId} failed: ${code ?? ''} ${message}`)
}
