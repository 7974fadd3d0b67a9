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
import { abortFailedExport, createJobRunner, EXPORT_PROCESSOR_OPTION_NAMES } from './processor.js'
import type { ExportNotification } from '../delivery/webhook.js'
import type { ExportJob, ExportProcessorOptions } from './types.js'

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

const NAMES: ReadonlySet<string> = new Set([
  ...[...EXPORT_PROCESSOR_OPTION_NAMES].filter((name) => name !== 'progressIntervalMs'),
  ...optionNames<Omit<LambdaExportHandlerOptions, keyof ExportProcessorOptions>>({
    store: true,
    sqs: true,
    queueUrl: true,
    send: true,
    maxReceiveCount: true,
    marginMs: true,
    jobId: true,
    onError: true,
  }),
])

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
  /** When the job's first step began (ms): its names' `{date}` in every step. */
  startedAt?: number
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
  // (The jobs whose export.failed the processor sent itself: never twice.)
  const failedSent = new Set<string>()
  const notify = processor.notify
  const run = createJobRunner({
    ...processor,
    progressIntervalMs: 1000,
    ...(notify && {
      notify: (notification: ExportNotification) => {
        if (notification.event === 'export.failed') failedSent.add(notification.jobId)
        return notify(notification)
      },
    }),
  })

  async function handle(record: SqsRecord, context: LambdaContext, first: boolean): Promise<'done' | 'retry'> {
    const { data, seq, id: given } = readBody(record)
    const id = given ?? jobIdOf(data, record)
    checkString('jobId', id)
    const message = (step: number) => JSON.stringify({ ...data, [FIELD]: { jobId: id, seq: step } })
    const left = context.getRemainingTimeInMillis()
    if (left <= marginMs) {
      // An invocation that begins with no time to export: the function's timeout is too short
      // (handing the message on would loop for ever).
      if (first)
        throw new ExportError(
          'ERR_INVALID_OPTION',
          'options',
          `The invocation began with ${left} ms left, not more than marginMs (${marginMs}): give the function a longer timeout`,
        )
      // A later record of the batch: it goes back as it came.
      return (void (await sendBody(message(seq))), 'done')
    }

    // The job's record, written only by compare-and-set, one write at a time.
    let version = 0
    let state: JobRecord = { seq: 0, data: {} }
    let writes: Promise<unknown> = Promise.resolve()
    const write = (next: (current: JobRecord) => JobRecord): Promise<boolean> => {
      const attempt = writes.then(async () => {
        const value = next(state)
        if (!(await store.put(id, version + 1, JSON.stringify(value)))) return false
        version++
        state = value
        return true
      })
      writes = attempt.catch(() => {})
      return attempt
    }
    // Claims this message's step: a duplicate, a step run before, or one another invocation runs, are told apart.
    for (let tries = 1; ; tries++) {
      const read = await store.get(id)
      version = read?.version ?? 0
      state = read ? parseRecord(read.value, id) : { seq: 0, data: {} }
      if (!read && seq > 0) throw new ExportError('ERR_STATE', 'state', `The store has no record of export ${id}, whose step ${seq} this message is`)
      if (state.completed || state.failed) return 'done' // a duplicate of a finished job's message
      if (state.seq > seq) {
        // A step that has run: its continuation is sent once more if it may not have been.
        if (state.seq === seq + 1 && !state.sent) await sendBody(message(state.seq))
        return 'done'
      }
      if (state.seq < seq) throw new ExportError('ERR_STATE', 'state', `Export ${id} is at step ${state.seq} in the store, behind this message's ${seq}`)
      // Another invocation runs this step (this is a duplicate, or its own message back early): the
      // message comes back when that one's time is up, as a new one (this receive is not spent).
      if (state.lease && state.lease.until > Date.now()) return (void (await sendBody(message(seq), delayUntil(state.lease.until))), 'done')
      const lease = { owner: context.awsRequestId ?? randomUUID(), until: Date.now() + context.getRemainingTimeInMillis() + LEASE_SLACK_MS }
      // (When the job was due, for its names' {date}: its first step's time, in every step.)
      if (await write((current) => ({ ...current, lease, startedAt: current.startedAt ?? Date.now() }))) break
      if (tries === 3) return 'retry'
    }

    const receives = Number(record.attributes?.ApproximateReceiveCount ?? 1)
    let takenOver = false
    const mustWrite = async (next: (current: JobRecord) => JobRecord) => {
      if (await write(next)) return
      takenOver = true
      throw new ExportError('ERR_STATE', 'state', `Another invocation took over export ${id}: this one stops`)
    }
    const job: ExportJob = {
      id,
      timestamp: state.startedAt,
      data: { ...data, ...state.data },
      attemptsMade: receives - 1,
      // (Taken over, this invocation's failure is not the job's last: the other one goes on.)
      opts: {
        get attempts() {
          return takenOver ? Infinity : maxReceiveCount
        },
      },
      updateProgress: async () => {},
      async updateData(next) {
        const { exportCheckpoint, exportPartitions, exportCommitted } = next as ExportJob['data']
        await mustWrite((current) => {
          // The processor lets go of its commit marker once the job is done: the job is complete.
          if (current.data.exportCommitted && !exportCommitted && !exportCheckpoint && !exportPartitions) {
            const { rows, bytes } = current.data.exportCommitted
            return { seq, data: {}, startedAt: current.startedAt, completed: { rows, bytes, at: Date.now() } }
          }
          return { ...current, data: { exportCheckpoint, exportPartitions, exportCommitted } }
        })
        job.data = next
      },
    }

    const before = progressOf(state.data)
    const pause = new AbortController()
    const stop = new AbortController()
    const timers = [setTimeout(() => pause.abort(), Math.max(0, left - marginMs)), setTimeout(() => stop.abort(), Math.max(0, left - marginMs / 4))]
    try {
      const outcome = await run(job, { pause: pause.signal, stop: stop.signal }).finally(() => timers.forEach(clearTimeout))
      if (!('paused' in outcome)) return 'done' // completed: updateData wrote so
      // Paused (or stopped) at the deadline: the next step continues from the checkpoint.
      const stalled = progressOf(state.data) > before ? 0 : (state.stalled ?? 0) + 1
      if (stalled >= MAX_STALLED) {
        // It would loop: the job fails now.
        const error = new ExportError(
          'ERR_ABORTED',
          'export',
          `Export ${id} stopped at its deadline ${stalled} times in a row with nothing more to continue from: a continued export needs a keyset source and a text format (docs/lambda.md), and an invocation long enough to upload a 5 MiB part`,
        )
        await fail(job, write, error, true)
        onError(error, record)
        return 'done'
      }
      const next = (current: JobRecord): JobRecord => ({
        seq: seq + 1,
        data: current.data,
        startedAt: current.startedAt,
        sent: false,
        ...(stalled > 0 ? { stalled } : {}),
      })
      await mustWrite(next)
      await sendBody(message(seq + 1))
      await write((current) => ({ ...current, sent: true })).catch(() => {}) // (unsaved, a duplicate of this message sends it again: harmless)
      return 'done'
    } catch (error) {
      if (!takenOver) await fail(job, write, error, receives >= maxReceiveCount)
      throw error
    }
  }

  // A failed step: its lease let go; on the message's last receive the job fails for good (its
  // upload aborted, export.failed sent, unless the processor did, or the export had landed).
  async function fail(job: ExportJob, write: (next: (current: JobRecord) => JobRecord) => Promise<boolean>, error: unknown, last: boolean): Promise<void> {
    const { code = 'ERR_UNKNOWN', message } = error as ExportError
    if (last) {
      const data = job.data as JobRecord['data']
      if (!data.exportCommitted) {
        await abortFailedExport((processor.container ?? processor.s3)!, { data }).catch(() => {})
        if (!failedSent.delete(String(job.id)))
          await Promise.resolve(notify?.({ event: 'export.failed', jobId: String(job.id), error: { code, message } })).catch(() => {})
      }
    }
    await write((current) => ({ ...current, lease: undefined, ...(last ? { failed: { code, message } } : {}) })).catch(() => {})
  }

  return async (event, context) => {
    const batchItemFailures: SqsBatchResponse['batchItemFailures'] = []
    for (const record of event.Records ?? []) {
      try {
        if ((await handle(record, context, record === event.Records![0])) === 'retry') batchItemFailures.push({ itemIdentifier: record.messageId })
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
