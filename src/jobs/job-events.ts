// Server-Sent Events for one export job: what a status page listens to. BullMQ's QueueEvents is
// the caller's; only the structural parts used here are typed.
import { invalidOption } from '../core/errors.js'

/** The parts of a BullMQ Queue this uses. */
export interface JobLookup {
  getJob(id: string): Promise<{ getState(): Promise<string>; progress?: unknown; returnvalue?: unknown; failedReason?: string } | undefined>
}

/** The parts of a BullMQ QueueEvents this uses. */
export interface JobEventSource {
  on(
    event: 'progress' | 'completed' | 'failed',
    listener: (args: { jobId: string; data?: unknown; returnvalue?: unknown; failedReason?: string }) => void,
  ): unknown
  off(
    event: 'progress' | 'completed' | 'failed',
    listener: (args: { jobId: string; data?: unknown; returnvalue?: unknown; failedReason?: string }) => void,
  ): unknown
}

/** An HTTP response (node:http ServerResponse, or anything with its calls). */
export interface EventResponse {
  writeHead(status: number, headers: Record<string, string>): unknown
  write(chunk: string): unknown
  end(): unknown
  once(event: 'close', listener: () => void): unknown
}

export interface ExportEventsOptions {
  queue: JobLookup
  /** One QueueEvents of the queue, shared by every page that listens (it holds a blocking connection). */
  queueEvents: JobEventSource
  jobId: string
  /** What a page may see of the job's return value (e.g. leave the presigned URL out). Default: all of it. */
  result?(returnvalue: unknown): unknown
  /**
   * How often the job's state is read again while the stream is open, in ms (default 5000): an
   * event QueueEvents missed (one created moments ago and not yet reading, a Redis reconnect)
   * still ends the stream; each read also writes an SSE comment, which keeps idle proxies from
   * closing the stream.
   */
  checkIntervalMs?: number
}

/**
 * Answers a request with Server-Sent Events for one export job: first `status`
 * (`{ state, progress, result?, error? }`), then `progress` (the job's progress:
 * `{ rows, totalRows, percent, etaMs, bytes }` from `createExportProcessor`), and at the end
 * `completed` (`{ result }`) or `failed` (`{ error }`), after which the response ends. Every tab
 * on the same job gets its own stream from the one QueueEvents; the job's state is also read every
 * `checkIntervalMs`, so an event QueueEvents missed never leaves a page waiting. Resolves when the
 * response has ended or the client went away (its listeners removed); an unknown job gets 404.
 *
 * @example if (url === `/exports/${id}/events`) await sendExportEvents(res, { queue, queueEvents, jobId: id })
 */
export async function sendExportEvents(response: EventResponse, options: ExportEventsOptions): Promise<void> {
  const { queue, queueEvents, jobId, result = (value: unknown) => value, checkIntervalMs = 5000 } = options
  if (!Number.isFinite(checkIntervalMs) || checkIntervalMs <= 0) invalidOption('checkIntervalMs', 'a positive number of milliseconds', checkIntervalMs)
  // Events that come before the headers are written (while the job is read) wait for them: a
  // write before writeHead would send the headers without text/event-stream.
  let pending: string[] | undefined = []
  const send = (event: string, data: unknown) => {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    if (pending) pending.push(text)
    else response.write(text)
  }
  let finished: () => void = () => {}
  const done = new Promise<void>((resolve) => (finished = resolve))
  let ended = false
  let timer: NodeJS.Timeout | undefined
  const close = () => {
    if (ended) return
    ended = true
    clearTimeout(timer)
    queueEvents.off('progress', onProgress)
    queueEvents.off('completed', onCompleted)
    queueEvents.off('failed', onFailed)
    response.end()
    finished()
  }
  // An end reported before the headers: the job's state, read next, says it.
  let endedEarly = false
  const end = () => (pending ? (endedEarly = true) : close())
  const onProgress = (args: { jobId: string; data?: unknown }) => void (args.jobId === jobId && send('progress', args.data))
  const onCompleted = (args: { jobId: string; returnvalue?: unknown }) => {
    if (args.jobId !== jobId) return
    send('completed', { result: result(args.returnvalue) })
    end()
  }
  const onFailed = (args: { jobId: string; failedReason?: string }) => {
    if (args.jobId !== jobId) return
    send('failed', { error: args.failedReason })
    end()
  }
  // Listening first, then reading the job: nothing that happens in between is missed.
  queueEvents.on('progress', onProgress)
  queueEvents.on('completed', onCompleted)
  queueEvents.on('failed', onFailed)
  response.once('close', close)
  let job = await queue.getJob(jobId)
  if (ended) return done // the client went away meanwhile
  if (!job) {
    response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
    response.write('no such export\n')
    close()
    return done
  }
  const state = await job.getState()
  // The job was read before its state: one that ended between the two is read again, with its result.
  if (state === 'completed' || state === 'failed') job = (await queue.getJob(jobId)) ?? job
  if (ended) return done
  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
  response.write('retry: 2000\n\n')
  const early = pending
  pending = undefined
  send('status', {
    state,
    progress: job.progress ?? null,
    ...(state === 'completed' ? { result: result(job.returnvalue) } : {}),
    ...(state === 'failed' ? { error: job.failedReason } : {}),
  })
  // A job that had ended is told by its status alone; one still running then gets what came
  // meanwhile, its end included.
  if (state === 'completed' || state === 'failed') close()
  else for (const text of early) response.write(text)
  if (endedEarly) close()
  // The state read again now and then: the end is sent once, whoever sees it first.
  const check = async () => {
    try {
      let now = await queue.getJob(jobId)
      const state = await now?.getState()
      if (state === 'completed' || state === 'failed') now = await queue.getJob(jobId) // read after it ended: with its result
      if (ended) return
      if (!now) return close() // removed meanwhile
      if (state === 'completed') return onCompleted({ jobId, returnvalue: now.returnvalue })
      if (state === 'failed') return onFailed({ jobId, failedReason: now.failedReason })
      response.write(': still running\n\n') // a comment: keeps idle proxies from closing the stream
    } catch {
      // Redis unreachable for a moment: read again at the next tick.
    }
    if (!ended) timer = setTimeout(() => void check(), checkIntervalMs)
  }
  if (!ended) timer = setTimeout(() => void check(), checkIntervalMs)
  return done
}
