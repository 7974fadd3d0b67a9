// The plain export job: one export to a stable S3 key, resumable from its last completed part
// when its source is a keyset source and its format a text format.
import { ExportError, invalidOption } from '../core/errors.js'
import { exportStream } from '../pipeline/export-stream.js'
import { commitUnknown } from '../parts/commit.js'
import { checkFunction, checkObject, checkPositiveInteger, checkString, checkTimerMs, optionNames } from '../core/options.js'
import { checkDeliverySpec, deliver, expiryTags } from '../delivery/deliver.js'
import { keyFromTemplate } from '../delivery/names.js'
import type { S3ClientLike, S3Location } from '../sinks/s3/client.js'
import { abortOtherUploads, checkPartSize, partSizeFor } from '../sinks/s3/multipart.js'
import { exportKey } from '../sinks/s3/presign.js'
import { ResumableUpload, sinkError, type ExportCheckpoint } from '../sinks/s3/resumable.js'
import { s3Sink } from '../sinks/s3/sink.js'
import type { Progress } from '../stages/progress.js'
import { saveAfterCommit } from '../pipeline/watermark-store.js'
import { COMPRESSION_CONTENT_TYPES, COMPRESSION_EXTENSIONS } from '../core/types.js'
import { holdSource } from './held-source.js'
import { removePartitionedJob, runPartitionedJob } from './partitioned-job.js'
import {
  compressionOfSpec,
  EXPORT_SPEC_NAMES,
  isFinalAttempt,
  partitionColumnsOf,
  pipelineOf,
  type ExportJob,
  type ExportJobResult,
  type ExportProcessorOptions,
  type ExportSpec,
} from './types.js'

const EXPORT_PROCESSOR_OPTION_NAMES = optionNames<ExportProcessorOptions>({
  s3: true,
  bucket: true,
  prefix: true,
  resolve: true,
  urlExpiresIn: true,
  partSize: true,
  progressIntervalMs: true,
  notify: true,
  onComplete: true,
  log: true,
  now: true,
})

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
  checkObject('options', options, EXPORT_PROCESSOR_OPTION_NAMES)
  const {
    s3,
    bucket,
    prefix = 'exports',
    resolve,
    urlExpiresIn = 86_400,
    partSize = 8 * 1024 * 1024,
    progressIntervalMs = 1000,
    notify,
    onComplete,
    log,
    now = () => new Date(),
  } = options
  checkString('bucket', bucket)
  checkFunction('resolve', resolve)
  checkPositiveInteger('urlExpiresIn', urlExpiresIn)
  checkTimerMs('progressIntervalMs', progressIntervalMs)
  checkPartSize('partSize', partSize)
  if (notify !== undefined) checkFunction('notify', notify)
  if (onComplete !== undefined) checkFunction('onComplete', onComplete)
  if (log !== undefined && typeof log?.record !== 'function') invalidOption('log', 'an export log (postgresExportLog)', log)
  checkFunction('now', now)

  return async (job) => {
    const jobId = String(job.id)
    const saved = job.data.exportCheckpoint
    // Where a crashed attempt stopped: its last part's last key, or a partitioned job's checkpoint's.
    const spec = await resolve(job, { after: job.data.exportPartitions ? job.data.exportPartitions.checkpoint.after : saved?.lastKey })
    // S3 is asked before exportStream takes the source (see held-source.ts).
    const { started, discard } = holdSource(spec)
    let compression: ReturnType<typeof compressionOfSpec>
    let key: string
    const startedAt = new Date(job.timestamp ?? now().getTime())
    try {
      checkObject('spec', spec, EXPORT_SPEC_NAMES)
      checkDeliverySpec(spec)
      compression = compressionOfSpec(spec)
      // resolve was given where the earlier attempt's kind of export stopped: the same kind only.
      const partitioned = spec.partitionBy !== undefined
      if ((partitioned && saved?.lastKey !== undefined) || (!partitioned && job.data.exportPartitions !== undefined))
        throw new ExportError(
          'ERR_INVALID_OPTION',
          'options',
          `An earlier attempt of this job ran ${partitioned ? 'an export without partitionBy' : 'a partitioned export'}: resolve must give every attempt of a job the same kind of export (it was given where that one stopped)`,
        )
      if (spec.key !== undefined) checkString('key', spec.key)
      key =
        spec.key === undefined
          ? exportKey({ prefix, jobId, format: spec.format, compression })
          : keyFromTemplate(spec.key, { jobId, date: startedAt, values: spec.labels }, partitioned ? partitionColumnsOf(spec.partitionBy!) : undefined)
    } catch (error) {
      discard()
      throw error
    }
    const save = (checkpoint: ExportCheckpoint | undefined) => job.updateData({ ...job.data, exportCheckpoint: checkpoint })
    // Throttled where it comes from: exportStream's progress tap, or one call per uploaded part.
    const report = ({ rows, totalRows, percent, etaMs, bytes, rowsPerSecond }: Partial<Progress> & { rows: number }) =>
      void job.updateProgress({ rows, totalRows, percent, etaMs, bytes, rowsPerSecond }).catch(() => {})

    // Tagged with their lifetime, for a lifecycle rule (docs/delivery.md#expiry).
    const tags = expiryTags(spec.expiresIn)
    const source = spec.source as { keyOf?: (row: unknown) => unknown }
    const resumable = typeof source.keyOf === 'function' && typeof spec.format.nextSegment === 'function'
    try {
      let result: Pick<ExportJobResult, 'location' | 'rows' | 'bytes' | 'checksum' | 'partitions'> & { watermark?: unknown; resumed?: boolean }
      if (spec.partitionBy !== undefined) {
        if (spec.watermark) invalidOption('watermark', 'unset for a partitioned job (not supported yet)', spec.watermark)
        const context = { s3, bucket, partSize, urlExpiresIn, progressIntervalMs, tags }
        // (Its key template with the job's names filled: the partitions' stay.)
        result = await runPartitionedJob(
          context,
          job,
          { ...spec, ...(spec.key !== undefined ? { key } : {}), partitionBy: spec.partitionBy },
          { started, discard, report, jobKey: key },
        )
      } else if (resumable) {
        // One multipart upload whose parts end on row boundaries, checkpointed after each: the
        // same pipeline as any export (transforms, progress, gzip on every core), in segments.
        const upload = new ResumableUpload({
          client: s3,
          bucket,
          key,
          contentType: compression ? COMPRESSION_CONTENT_TYPES[compression] : spec.format.contentType,
          partSize: (n) => partSizeFor(n, partSize),
          checkpoint: saved,
          onCheckpoint: save,
          tags,
        })
        const earlier = await upload.open()
        if (earlier) {
          // An earlier attempt completed the object and died before saying so: nothing to export.
          discard()
          result = { rows: saved!.rows, bytes: saved!.bytes, location: earlier, checksum: upload.checksum }
        } else {
          started()
          const startRows = saved?.rows ?? 0
          const startBytes = saved?.bytes ?? 0
          const exported = await exportStream({
            ...pipelineOf(spec),
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
          result = {
            rows: startRows + exported.rows,
            bytes: startBytes + exported.bytes,
            location: exported.location as S3Location,
            checksum: exported.checksum,
          }
        }
      } else {
        // Not resumable: uploads a crashed attempt left are aborted, and this attempt starts over.
        await abortOtherUploads({ client: s3, bucket, key }).catch((error: unknown) => {
          throw sinkError(error)
        })
        started()
        const exported = await exportStream({
          ...pipelineOf(spec),
          sink: s3Sink({
            client: s3,
            bucket,
            key,
            partSize,
            tags,
            onUploadCreated: (uploadId) => save({ uploadId, bucket, key, parts: [], rows: 0, bytes: 0 }),
          }),
          progressIntervalMs,
          onProgress: report,
        })
        const { rows, bytes, checksum, watermark } = exported
        result = { rows, bytes, location: exported.location as S3Location, checksum, watermark }
      }
      if (spec.watermark) await saveWatermark(spec.watermark, result)
      // Recorded in the log, linked (never past its expiry) and notified: a failed notification is reported, not the job's failure.
      const format = `${spec.format.extension}${compression ? COMPRESSION_EXTENSIONS[compression] : ''}`
      const delivered = await deliver({ s3, urlExpiresIn, log, notify, now }, spec, { jobId, format, startedAt, ...result })
      // Done (the log holds it): a retry of the completed job exports again (from the start, as a new run).
      if (job.data.exportPartitions) await job.updateData({ ...job.data, exportPartitions: undefined })
      else await save(undefined)
      await job.updateProgress({ rows: result.rows, percent: 100, bytes: result.bytes })
      const done: ExportJobResult = {
        rows: result.rows,
        bytes: result.bytes,
        location: result.location,
        url: delivered.link!.url,
        urlExpiresAt: delivered.link!.expiresAt.toISOString(),
        resumed: result.resumed ?? (saved !== undefined && resumable),
        ...(delivered.entry.expiresAt ? { expiresAt: delivered.entry.expiresAt.toISOString() } : {}),
        ...(delivered.entry.filename ? { filename: delivered.entry.filename } : {}),
        ...(result.checksum ? { checksum: result.checksum } : {}),
        ...(result.partitions
          ? {
              partitions: result.partitions.map((partition, i) => {
                const { entry, urls } = delivered.partitions[i]!
                return { ...partition, urls, ...(entry.filename ? { filename: entry.filename } : {}) }
              }),
            }
          : {}),
        ...(delivered.notifyErrors.length > 0 ? { notifyErrors: delivered.notifyErrors.map((error) => error.message) } : {}),
      }
      for (const error of delivered.notifyErrors) spec.logger?.warn?.({ event: 'notify.failed', jobId, code: error.code, message: error.message })
      await onComplete?.(done, job)
      return done
    } catch (error) {
      discard() // when exportStream had not taken them yet
      // The upload vanished (aborted by a lifecycle rule or an operator) and the object is not
      // ours: the next attempt starts over instead of failing on the same checkpoint.
      if ((error as ExportError).cause instanceof Error && ((error as ExportError).cause as Error).name === 'NoSuchUpload')
        await save(undefined).catch(() => {})
      const finalAttempt = isFinalAttempt(job)
      if (finalAttempt) {
        // No attempt will continue this upload: abort it rather than leave billed parts (a
        // partitioned job: remove what its run wrote, unless its manifest landed).
        // (Not when its manifest's write may still land: then its parts are kept, named in leftBehind.)
        if (job.data.exportPartitions) {
          if (!commitUnknown(error)) await removePartitionedJob(s3, job.data.exportPartitions).catch(() => {})
        } else await abortOtherUploads({ client: s3, bucket, key }).catch(() => {})
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
  if (job.data.exportPartitions) {
    if (job.isFailed && !(await job.isFailed())) return
    const left = await removePartitionedJob(s3, job.data.exportPartitions)
    if (left.length > 0)
      throw new ExportError('ERR_SINK', 'sink', `${left.length} objects of the failed export could not be removed: ${left.slice(0, 5).join(', ')}`)
    return
  }
  const checkpoint = job.data.exportCheckpoint
  if (!checkpoint?.bucket || !checkpoint.key) return
  if (job.isFailed && !(await job.isFailed())) return
  await abortOtherUploads({ client: s3, bucket: checkpoint.bucket, key: checkpoint.key })
}
