// The plain export job: one export to a stable S3 key (job-export.ts), resumable from its last
// completed part when its source is a keyset source and its format a text format; then, once it
// has committed (a mark in the job's data), its delivery: watermark, export log, links, notifications.
import { ExportError, invalidOption } from '../core/errors.js'
import { commitUnknown } from '../parts/commit.js'
import { checkBoolean, checkFunction, checkObject, checkPositiveInteger, checkString, checkTimerMs, optionNames } from '../core/options.js'
import { checkDeliverySpec, deliver, exportIdOf, expiryTags } from '../delivery/deliver.js'
import { keyFromTemplate } from '../delivery/names.js'
import type { S3ClientLike, S3Location } from '../sinks/s3/client.js'
import { checkPartSize, MIN_PART_SIZE } from '../sinks/s3/multipart.js'
import { MAX_BLOCK_SIZE, type AzureContainerLike } from '../sinks/azure/client.js'
import { azureJobStore, jobStoreOf, s3JobStore, type JobStore } from './job-store.js'
import { isGcsClient } from '../sinks/s3/gcs.js'
import { exportKey } from '../sinks/s3/presign.js'
import type { Progress } from '../stages/progress.js'
import { saveAfterCommit } from '../pipeline/watermark-store.js'
import { COMPRESSION_EXTENSIONS } from '../core/types.js'
import { holdSource } from './held-source.js'
import { runJobExport } from './job-export.js'
import { removePartitionedJob } from './partitioned-job.js'
import {
  compressionOfSpec,
  EXPORT_SPEC_NAMES,
  isFinalAttempt,
  partitionColumnsOf,
  type ExportJob,
  type ExportJobCommitted,
  type ExportJobResult,
  type ExportProcessorOptions,
  type ExportSpec,
  type JobDeadline,
} from './types.js'

export const EXPORT_PROCESSOR_OPTION_NAMES = optionNames<ExportProcessorOptions>({
  s3: true,
  bucket: true,
  container: true,
  prefix: true,
  resolve: true,
  urlExpiresIn: true,
  partSize: true,
  progressIntervalMs: true,
  notify: true,
  onComplete: true,
  log: true,
  expiryTag: true,
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
  const run = createJobRunner(options)
  // (BullMQ calls a processor with more arguments: none of them is a deadline.)
  return (job) => run(job) as Promise<ExportJobResult>
}

/** A job's attempt that stopped at its deadline: the job's data holds where the next one continues. */
export interface PausedJob {
  paused: true
}

/**
 * The processor's attempt of a job, with a deadline when the caller has one (the Lambda handler):
 * resolves with `{ paused: true }` when the export stopped at it, uncommitted, its checkpoint saved.
 */
export function createJobRunner(options: ExportProcessorOptions): (job: ExportJob, deadline?: JobDeadline) => Promise<ExportJobResult | PausedJob> {
  checkObject('options', options, EXPORT_PROCESSOR_OPTION_NAMES)
  const {
    s3,
    bucket,
    container,
    prefix = 'exports',
    resolve,
    urlExpiresIn = 86_400,
    partSize = 8 * 1024 * 1024,
    progressIntervalMs = 1000,
    notify,
    onComplete,
    log,
    expiryTag = false,
    now = () => new Date(),
  } = options
  if (container === undefined) {
    if (typeof s3?.send !== 'function') invalidOption('s3', 'an S3Client (or give an Azure `container` instead)', s3)
    checkString('bucket', bucket)
  } else {
    if (typeof container?.getBlockBlobClient !== 'function') invalidOption('container', "a ContainerClient of '@azure/storage-blob'", container)
    if (s3 !== undefined || bucket !== undefined)
      invalidOption(s3 !== undefined ? 's3' : 'bucket', 'unset with an Azure `container` (one store per processor)', s3 ?? bucket)
  }
  checkFunction('resolve', resolve)
  checkPositiveInteger('urlExpiresIn', urlExpiresIn)
  checkTimerMs('progressIntervalMs', progressIntervalMs)
  checkPartSize('partSize', partSize)
  if (notify !== undefined) checkFunction('notify', notify)
  if (onComplete !== undefined) checkFunction('onComplete', onComplete)
  if (log !== undefined && typeof log?.record !== 'function') invalidOption('log', 'an export log (postgresExportLog)', log)
  checkFunction('now', now)
  checkBoolean('expiryTag', expiryTag)
  // (An Azure block is at most 4000 MiB.)
  if (container !== undefined && partSize > MAX_BLOCK_SIZE) invalidOption('partSize', 'at most 4000 MiB (4194304000) with an Azure container', partSize)
  const store = jobStoreOf({ s3, bucket, container, partSize })
  if (expiryTag && s3 && isGcsClient(s3))
    invalidOption('expiryTag', 'false with a GCS client (GCS has no object tags: use a lifecycle rule by age or prefix)', expiryTag)

  return async (job, deadline) => {
    const jobId = String(job.id)
    const exportId = exportIdOf(job)
    const committed = job.data.exportCommitted
    // Where a crashed attempt stopped: its last part's last key, or a partitioned job's checkpoint's.
    const after = committed ? undefined : job.data.exportPartitions ? job.data.exportPartitions.checkpoint.after : job.data.exportCheckpoint?.lastKey
    const spec = await resolve(job, { after })
    // S3 is asked before exportStream takes the source (see held-source.ts).
    const { started, discard } = holdSource(spec)
    let compression: ReturnType<typeof compressionOfSpec>
    let key = ''
    // When the job was due (names' `{date}`): a scheduler's run time, or when it was added plus its
    // delay; the same in every attempt.
    const startedAt = committed?.startedAt ?? job.opts.prevMillis ?? (job.timestamp === undefined ? now().getTime() : job.timestamp + (job.opts.delay ?? 0))
    // (A committed export is delivered with the settings it committed with: this spec is not used.)
    if (!committed)
      try {
        checkObject('spec', spec, EXPORT_SPEC_NAMES)
        const partitioned = spec.partitionBy !== undefined
        const partitions = partitioned ? partitionColumnsOf(spec.partitionBy!) : undefined
        checkDeliverySpec(spec, partitions, { log: log !== undefined, tag: expiryTag })
        compression = compressionOfSpec(spec)
        // resolve was given where the earlier attempt's kind of export stopped: the same kind only.
        if ((partitioned && job.data.exportCheckpoint?.lastKey !== undefined) || (!partitioned && job.data.exportPartitions !== undefined))
          throw new ExportError(
            'ERR_INVALID_OPTION',
            'options',
            `An earlier attempt of this job ran ${partitioned ? 'an export without partitionBy' : 'a partitioned export'}: resolve must give every attempt of a job the same kind of export (it was given where that one stopped)`,
          )
        if (spec.key !== undefined) checkString('key', spec.key)
        key =
          spec.key === undefined
            ? exportKey({ prefix, jobId, format: spec.format, compression })
            : keyFromTemplate(spec.key, { jobId, date: new Date(startedAt), values: spec.labels }, partitions)
      } catch (error) {
        discard()
        throw error
      }
    // Throttled where it comes from: exportStream's progress tap, or one call per uploaded part.
    const report = ({ rows, totalRows, percent, etaMs, bytes, rowsPerSecond }: Partial<Progress> & { rows: number }) =>
      void job.updateProgress({ rows, totalRows, percent, etaMs, bytes, rowsPerSecond }).catch(() => {})

    let marker: ExportJobCommitted
    let fresh: ExportJobResult['partitions'] // this attempt's links of the partitions, still fresh
    let landed = false
    try {
      if (committed) {
        // An earlier attempt committed and failed after (its delivery, a store): only what comes after the commit again.
        discard()
        marker = committed
      } else {
        // Tagged with their lifetime, for a lifecycle rule (docs/delivery.md#expiry).
        const context = { store, partSize, urlExpiresIn, progressIntervalMs, tags: expiryTags(spec.expiresIn, expiryTag) }
        const exported = await runJobExport(context, job, spec, { key, compression }, { started, discard, report, deadline })
        if ('paused' in exported) return exported
        landed = true
        const { filename, labels, expiresIn, requestedBy, fingerprint } = spec
        // The commit, in the job (with what its delivery needs): from here on, a failure retries
        // what comes after it, never the export.
        marker = {
          ...exported,
          format: `${spec.format.extension}${compression ? COMPRESSION_EXTENSIONS[compression] : ''}`,
          startedAt,
          committedAt: now().getTime(),
          partitions: exported.partitions?.map(({ urls: _urls, ...partition }) => partition),
          delivery: { filename, labels, expiresIn, requestedBy, fingerprint },
        }
        await job.updateData({ ...job.data, exportCheckpoint: undefined, exportPartitions: undefined, exportCommitted: marker })
        fresh = exported.partitions
      }
    } catch (error) {
      discard() // when exportStream had not taken them yet
      if (landed) throw error // the export committed: nothing of it is undone, no export.failed
      // Stopped at the deadline, as a crash would: the job's data holds where the next attempt continues.
      if (deadline?.stop.aborted && (error as ExportError).code === 'ERR_ABORTED') return { paused: true }
      // The upload vanished (aborted by a lifecycle rule or an operator) and the object is not
      // ours: the next attempt starts over instead of failing on the same checkpoint.
      if ((error as ExportError).cause instanceof Error && ((error as ExportError).cause as Error).name === 'NoSuchUpload')
        await job.updateData({ ...job.data, exportCheckpoint: undefined }).catch(() => {})
      if (isFinalAttempt(job)) {
        // No attempt will continue this upload: abort it rather than leave billed parts (a
        // partitioned job: remove what its run wrote, unless its manifest landed).
        // (Not when its manifest's write may still land: then its parts are kept, named in leftBehind.)
        if (job.data.exportPartitions) {
          if (!commitUnknown(error)) await removePartitionedJob(store, job.data.exportPartitions).catch(() => {})
        } else await store.clearLeftovers(key).catch(() => {})
        const e = error as ExportError
        await Promise.resolve(notify?.({ event: 'export.failed', jobId, error: { code: e.code ?? 'ERR_UNKNOWN', message: e.message } })).catch(() => {})
      }
      throw error
    }

    // After the commit: the watermark, the log, the links, the notifications. A failure here fails
    // the attempt (a store down) and the next one does this again: the export stays as it landed,
    // and no `export.failed` is sent for an export that succeeded.
    if (spec.watermark && !marker.watermarkSaved) {
      await saveWatermark(spec.watermark, marker, store)
      // Saved once: a later retry must not put back this watermark over a newer job's.
      marker = { ...marker, watermarkSaved: true }
      await job.updateData({ ...job.data, exportCommitted: marker })
    }
    const done = { ...marker, ...(fresh ? { partitions: fresh } : {}) }
    const delivered = await deliver({ sign: store.sign, urlExpiresIn, log, notify, now }, { id: jobId, exportId }, marker.delivery, done)
    for (const error of delivered.notifyErrors) spec.logger?.warn?.({ event: 'notify.failed', jobId, code: error.code, message: error.message })
    const result: ExportJobResult = {
      rows: done.rows,
      bytes: done.bytes,
      location: done.location,
      url: delivered.link?.url ?? '',
      urlExpiresAt: delivered.link?.expiresAt.toISOString() ?? new Date(now()).toISOString(),
      resumed: done.resumed,
      ...(delivered.entry.expiresAt ? { expiresAt: delivered.entry.expiresAt.toISOString() } : {}),
      ...(delivered.entry.filename ? { filename: delivered.entry.filename } : {}),
      ...(done.checksum ? { checksum: done.checksum } : {}),
      ...(done.partitions
        ? {
            partitions: done.partitions.map(({ values, rows, bytes, locations }, i) => {
              const { entry, urls } = delivered.partitions[i]!
              return { values, rows, bytes, locations, urls, ...(entry.filename ? { filename: entry.filename } : {}) }
            }),
          }
        : {}),
      ...(delivered.notifyErrors.length > 0 ? { notifyErrors: delivered.notifyErrors.map((error) => error.message) } : {}),
    }
    await onComplete?.(result, job)
    await job.updateProgress({ rows: done.rows, percent: 100, bytes: done.bytes })
    // Done: a retry of the completed job exports again (from the start, as a new run).
    await job.updateData({ ...job.data, exportCommitted: undefined })
    return result
  }
}

/** Stores an incremental job's next watermark after its upload. */
async function saveWatermark(
  { store, name }: NonNullable<ExportSpec['watermark']>,
  result: { watermark?: unknown; location: S3Location },
  jobStore: JobStore,
): Promise<void> {
  if (result.watermark === undefined)
    throw new ExportError('ERR_INVALID_OPTION', 'options', 'A job with `watermark` needs an incremental source (postgresIncrementalSource)')
  await saveAfterCommit(store, name, result.watermark, jobStore.describe(result.location.key))
}

/**
 * For a BullMQ `failed` event (QueueEvents, which also reports jobs failed for stalling too often,
 * when no processor ran): aborts the multipart uploads the job's export left at its key.
 * Does nothing while the job can still be retried, or when it saved no checkpoint.
 *
 * @example queueEvents.on('failed', async ({ jobId }) => { const job = await queue.getJob(jobId); if (job) await abortFailedExport(s3, job) })
 */
export async function abortFailedExport(s3: S3ClientLike | AzureContainerLike, job: { data: ExportJob['data']; isFailed?(): Promise<boolean> }): Promise<void> {
  if (job.data.exportCommitted) return // the export landed: only its delivery failed
  const storeOf = (bucket: string) => ('send' in s3 ? s3JobStore(s3, bucket, MIN_PART_SIZE) : azureJobStore(s3, MIN_PART_SIZE))
  if (job.data.exportPartitions) {
    if (job.isFailed && !(await job.isFailed())) return
    const left = await removePartitionedJob(storeOf(job.data.exportPartitions.bucket), job.data.exportPartitions)
    if (left.length > 0)
      throw new ExportError('ERR_SINK', 'sink', `${left.length} objects of the failed export could not be removed: ${left.slice(0, 5).join(', ')}`)
    return
  }
  const checkpoint = job.data.exportCheckpoint
  const [bucket, key] = checkpoint && 'blob' in checkpoint ? [checkpoint.container, checkpoint.blob] : [checkpoint?.bucket, checkpoint?.key]
  if (!bucket || !key) return
  if (job.isFailed && !(await job.isFailed())) return
  await storeOf(bucket).clearLeftovers(key)
}
