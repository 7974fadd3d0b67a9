// stream-export/bullmq: a BullMQ processor that runs exports to S3. BullMQ itself is the caller's
// (an optional peer dependency): this module only needs a job's `id`, `data`, `updateProgress`
// and `updateData`.
import { checkFunction, checkObject, checkPositiveInteger, checkString, checkTimerMs } from './options.js'
import { ExportError, invalidOption } from './errors.js'
import { exportStream, type ExportOptions } from './export-stream.js'
import { abortOtherUploads } from './sinks/s3-multipart.js'
import { ResumableUpload, type ExportCheckpoint } from './sinks/s3-resumable.js'
import { GZIP_CONTENT_TYPE } from './stages/gzip.js'
import type { ExportNotification } from './jobs/webhook.js'
import { exportKey, presignDownload } from './sinks/presign.js'
import { MIN_PART_SIZE, partSizeFor, s3Sink, type S3ClientLike, type S3Location } from './sinks/s3.js'
import type { Progress } from './stages/progress.js'
import type { Formatter } from './types.js'
import { saveAfterCommit, type WatermarkStore } from './watermark-store.js'

export { notifyWebhook, verifyWebhook, SIGNATURE_HEADER, TIMESTAMP_HEADER, type ExportNotification, type WebhookOptions } from './jobs/webhook.js'
export { sendExportEvents, type ExportEventsOptions, type JobLookup, type JobEventSource, type EventResponse } from './jobs/job-events.js'
export type { ExportCheckpoint } from './sinks/s3-resumable.js'

/** The part of a BullMQ Job the processor uses. */
export interface ExportJob {
  id?: string
  data: Record<string, unknown> & { exportCheckpoint?: ExportCheckpoint }
  attemptsMade: number
  opts: { attempts?: number }
  updateProgress(progress: object): Promise<unknown>
  updateData(data: Record<string, unknown>): Promise<unknown>
}

/** What `resolve` returns for a job: the export's stages, as for exportStream. */
export interface ExportSpec {
  source: ExportOptions['source']
  format: Formatter
  gzip?: boolean
  transform?: ExportOptions['transform']
  /** The object's key, e.g. `orders/2026-11-23.csv.gz`. Default `${prefix}/${job.id}.${ext}[.gz]`. */
  key?: string
  /**
   * An incremental export (`postgresIncrementalSource`, built from `await store.load(name)`): the
   * source's next watermark is saved under `name` once the upload has completed, before the job
   * completes. If saving fails, the attempt fails and a retry exports the same rows again.
   */
  watermark?: { store: WatermarkStore; name: string }
}

export interface ExportProcessorOptions {
  s3: S3ClientLike
  bucket: string
  /** Key prefix: objects are `${prefix}/${job.id}.${ext}[.gz]`, so a retry overwrites its own. Default `exports`. */
  prefix?: string
  /**
   * Builds the export of a job. `after` is the source key where an earlier, crashed attempt
   * stopped (as saved in the job's data, so JSON: revive an ObjectId with `new ObjectId(after)`):
   * pass it to a keyset source (`postgresKeysetSource`, `mongoSource({ keyset: true })`) and the
   * export continues from there. Any other source restarts from the beginning on a retry.
   */
  resolve(job: ExportJob, context: { after?: unknown }): ExportSpec | Promise<ExportSpec>
  /** Lifetime of the presigned URL in the result. Default 86400 (a day). */
  urlExpiresIn?: number
  /** Part size of the upload. Default 8 MiB. */
  partSize?: number
  /** Time between job.updateProgress calls while rows stream. Default 1000 ms. */
  progressIntervalMs?: number
  /** Called after a job's export succeeded or finally failed, e.g. `notifyWebhook({ url, secret })`. */
  notify?(notification: ExportNotification): unknown
  /** Called after a job's export succeeded, before the job completes (e.g. to e-mail the link). */
  onComplete?(result: ExportJobResult, job: ExportJob): unknown
}

export interface ExportJobResult {
  location: S3Location
  rows: number
  bytes: number
  /** Presigned GET URL of the export. */
  url: string
  /** True when this attempt continued an earlier one's upload. */
  resumed: boolean
}

/**
 * A BullMQ processor: `new Worker('exports', createExportProcessor({ s3, bucket, resolve }), { connection })`.
 * It runs the job's export to a stable S3 key, reports throttled progress
 * (`{ rows, totalRows, percent, etaMs, bytes, rowsPerSecond }`) and returns the location with a presigned URL.
 *
 * With a keyset source and a text format (CSV, JSONL, JSON) it is resumable: after every
 * completed S3 part it saves in the job's data the UploadId, the parts and the source key of
 * the last row inside them; an attempt after a crash (worker killed) continues the same upload
 * from the next part and the next key. Otherwise a retry starts again, aborting the upload a
 * crashed attempt left.
 */
export function createExportProcessor(options: ExportProcessorOptions): (job: ExportJob) => Promise<ExportJobResult> {
  checkObject('options', options)
  const { s3, bucket, prefix = 'exports', resolve, urlExpiresIn = 86_400, partSize = 8 * 1024 * 1024, progressIntervalMs = 1000, notify, onComplete } = options
  checkString('bucket', bucket)
  checkFunction('resolve', resolve)
  checkPositiveInteger('urlExpiresIn', urlExpiresIn)
  checkTimerMs('progressIntervalMs', progressIntervalMs)
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) invalidOption('partSize', `an integer of at least 5 MiB (${MIN_PART_SIZE})`, partSize)
  if (notify !== undefined) checkFunction('notify', notify)
  if (onComplete !== undefined) checkFunction('onComplete', onComplete)

  return async (job) => {
    const jobId = String(job.id)
    const saved = job.data.exportCheckpoint
    const spec = await resolve(job, { after: saved?.lastKey })
    const gzip = spec.gzip ?? false
    if (spec.key !== undefined) checkString('key', spec.key)
    const key = spec.key ?? exportKey({ prefix, jobId, format: spec.format, gzip })
    const save = (checkpoint: ExportCheckpoint | undefined) => job.updateData({ ...job.data, exportCheckpoint: checkpoint })
    // Throttled where it comes from: exportStream's progress tap, or one call per uploaded part.
    const report = ({ rows, totalRows, percent, etaMs, bytes, rowsPerSecond }: Partial<Progress> & { rows: number }) =>
      void job.updateProgress({ rows, totalRows, percent, etaMs, bytes, rowsPerSecond }).catch(() => {})

    const source = spec.source as { keyOf?: (row: unknown) => unknown; destroy?(): void }
    const resumable = typeof source.keyOf === 'function' && typeof spec.format.nextSegment === 'function'
    try {
      let result: { rows: number; bytes: number; location: S3Location; watermark?: unknown }
      if (resumable) {
        // One multipart upload whose parts end on row boundaries, checkpointed after each: the
        // same pipeline as any export (transforms, progress, gzip on every core), in segments.
        const upload = new ResumableUpload({
          client: s3,
          bucket,
          key,
          contentType: gzip ? GZIP_CONTENT_TYPE : spec.format.contentType,
          partSize: (n) => partSizeFor(n, partSize),
          checkpoint: saved,
          onCheckpoint: save,
        })
        const earlier = await upload.open()
        if (earlier) {
          // An earlier attempt completed the object and died before saying so: nothing to export.
          source.destroy?.()
          spec.format.destroy()
          result = { rows: saved!.rows, bytes: saved!.bytes, location: earlier }
        } else {
          const startRows = saved?.rows ?? 0
          const startBytes = saved?.bytes ?? 0
          const exported = await exportStream({
            ...spec,
            sink: upload,
            progressIntervalMs,
            // Percent and ETA over what is left: a keyset source counts from `after`.
            onProgress: (p) =>
              report({
                ...p,
                rows: startRows + p.rows,
                bytes: startBytes + p.bytes,
                totalRows: p.totalRows === undefined ? undefined : startRows + p.totalRows,
              }),
          })
          result = { rows: startRows + exported.rows, bytes: startBytes + exported.bytes, location: exported.location as S3Location }
        }
      } else {
        // Not resumable: uploads a crashed attempt left are aborted, and this attempt starts over.
        await abortOtherUploads(s3, bucket, key)
        const exported = await exportStream({
          ...spec,
          sink: s3Sink({ client: s3, bucket, key, partSize, onUploadCreated: (uploadId) => save({ uploadId, bucket, key, parts: [], rows: 0, bytes: 0 }) }),
          progressIntervalMs,
          onProgress: report,
        })
        result = { rows: exported.rows, bytes: exported.bytes, location: exported.location as S3Location, watermark: exported.watermark }
      }
      if (spec.watermark) await saveWatermark(spec.watermark, result)
      await save(undefined)
      const url = await presignDownload(s3, { bucket, key, expiresIn: urlExpiresIn })
      await job.updateProgress({ rows: result.rows, percent: 100, bytes: result.bytes })
      const done = { rows: result.rows, bytes: result.bytes, location: result.location, url, resumed: saved !== undefined && resumable }
      await onComplete?.(done, job)
      await notify?.({ event: 'export.completed', jobId, rows: result.rows, bytes: result.bytes, location: result.location, url })
      return done
    } catch (error) {
      // The upload vanished (aborted by a lifecycle rule or an operator) and the object is not
      // ours: the next attempt starts over instead of failing on the same checkpoint.
      if ((error as ExportError).cause instanceof Error && ((error as ExportError).cause as Error).name === 'NoSuchUpload')
        await save(undefined).catch(() => {})
      const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
      if (finalAttempt) {
        // No attempt will continue this upload: abort it rather than leave billed parts.
        await abortOtherUploads(s3, bucket, key).catch(() => {})
        const e = error as ExportError
        await Promise.resolve(notify?.({ event: 'export.failed', jobId, error: { code: e.code ?? 'ERR_UNKNOWN', message: e.message } })).catch(() => {})
      }
      throw error
    }
  }
}

/** Stores an incremental job's next watermark after its upload. */
async function saveWatermark({ store, name }: NonNullable<ExportSpec['watermark']>, result: { watermark?: unknown; location: S3Location }): Promise<void> {
  if (result.watermark === undefined)
    throw new ExportError('ERR_INVALID_OPTION', 'options', 'A job with `watermark` needs an incremental source (postgresIncrementalSource)')
  await saveAfterCommit(store, name, result.watermark, `s3://${result.location.bucket}/${result.location.key}`)
}

/**
 * For a BullMQ `failed` event (QueueEvents, which also reports jobs failed for stalling too often,
 * when no processor ran): aborts the multipart uploads the job's export left at its key.
 * Does nothing while the job can still be retried, or when it saved no checkpoint.
 *
 * @example queueEvents.on('failed', async ({ jobId }) => { const job = await queue.getJob(jobId); if (job) await abortFailedExport(s3, job) })
 */
export async function abortFailedExport(s3: S3ClientLike, job: { data: ExportJob['data']; isFailed?(): Promise<boolean> }): Promise<void> {
  const checkpoint = job.data.exportCheckpoint
  if (!checkpoint?.bucket || !checkpoint.key) return
  if (job.isFailed && !(await job.isFailed())) return
  await abortOtherUploads(s3, checkpoint.bucket, checkpoint.key)
}

export {
  createShardedExportProcessor,
  type ShardedExportJob,
  type ShardedExportProcessorOptions,
  type ShardedExportResult,
  type ShardedExportSpec,
  type ShardedExportState,
  type ShardQueue,
} from './jobs/sharded-export.js'
export type { SplitShardResult } from './jobs/sharded-split.js'
export type { ShardAssignment, ShardResult } from './sinks/s3-shard.js'
