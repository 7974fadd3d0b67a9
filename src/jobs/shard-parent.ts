// The parent job of a sharded flow: plans the ranges, creates the upload (or, for split output,
// claims the manifest), adds one child job per range and waits; run again once every child is
// done, it commits: completes the upload in key order, or writes the manifest of every shard's parts.
import type { Readable } from 'node:stream'
import { removeAll } from '../core/remove-all.js'
import { ExportError, invalidOption, toExportError, type ExportErrorCode } from '../core/errors.js'
import { checkString } from '../core/options.js'
import { claimManifest } from '../parts/commit.js'
import { parseManifest } from '../parts/manifest.js'
import { manifestPath, newRunId } from '../parts/names.js'
import { checkSplitOptions } from '../parts/split-options.js'
import { isGcsClient } from '../sinks/s3/gcs.js'
import { abortOtherUploads, MultipartUpload } from '../sinks/s3/multipart.js'
import { exportKey, presignDownload } from '../sinks/s3/presign.js'
import { assembleShards, discardShards, jsonArrayStart, removeStash, reservePartNumbers, type ShardAssignment, type ShardResult } from '../sinks/s3/shards.js'
import { normalizeS3SinkOptions, s3PartStore } from '../sinks/s3/sink.js'
import { checkShardSpec, isJsonArray } from './shard-child.js'
import { compressionOfSpec } from './types.js'
import { recordSpan } from '../telemetry/otel.js'
import { assembleSplitShards, flowMarkerKey, flowObjects, partitionedFlowPrefix, splitShardPrefix, type SplitShardResult } from './sharded-split.js'
import { listKeys } from '../sinks/s3/client.js'
import { checkPartitionBy } from '../parts/partition-options.js'
import { partsKind } from '../parts/manifest.js'
import { manifestNameOf, parseTemplate } from '../parts/partition-names.js'
import { partitionsOf, templateOf } from './partitioned-job.js'
import { COMPRESSION_CONTENT_TYPES, type Manifest } from '../core/types.js'
import { deleteObject, putObject, type S3Location } from '../sinks/s3/client.js'
import { isFinalAttempt, type ShardedContext, type ShardedExportJob, type ShardedExportResult, type ShardedExportState } from './types.js'

const waitingChildren = () => Object.assign(new Error('Waiting for the shards of the export'), { name: 'WaitingChildrenError' })

const partStore = ({ s3, bucket }: ShardedContext, key: string) => s3PartStore(normalizeS3SinkOptions({ client: s3, bucket, key }))
const shardOf = ({ bucket }: ShardedContext, state: ShardedExportState) => ({
  bucket,
  key: state.key,
  uploadId: state.uploadId ?? '',
  stashPrefix: state.stashPrefix,
  ...(state.checksum && { checksum: state.checksum }),
})

export async function runParent(ctx: ShardedContext, job: ShardedExportJob, token: string | undefined): Promise<ShardedExportResult> {
  const { s3, bucket, queue, urlExpiresIn } = ctx
  let state = job.data.shardedExport
  let flowFailed = false
  // Once the commit has landed (or may have), nothing the flow wrote may be removed.
  const commit = { landed: false as boolean | 'unknown' }
  try {
    if (!state) state = await start(ctx, job)
    if (state.step === 'planned') {
      if (state.split) await putObject({ client: s3, bucket, key: flowMarkerKey(state.stashPrefix) }, Buffer.alloc(0))
      const { partCount, firstPart } = reservePartNumbers(state.ranges.length)
      const { shardedExport: _, ...data } = job.data
      await queue.addBulk(
        state.ranges.map((range) => {
          const assignment: ShardAssignment = {
            ...shardOf(ctx, state!),
            index: range.index,
            shards: state!.ranges.length,
            firstPart: firstPart(range.index),
            partCount,
            ...(state!.jsonArray ? { jsonArray: true } : {}),
          }
          return {
            name: `${job.name}.shard`,
            data: {
              ...data,
              exportShard: {
                ...assignment,
                range,
                ...(state!.split ? { split: state!.split, flowMarker: true } : {}),
                ...(state!.partitioned ? { partitioned: true } : {}),
              },
            },
            // The same job ids again after a crash here: BullMQ adds each child once.
            opts: {
              jobId: `${job.id}-shard-${range.index}`,
              parent: { id: job.id, queue: job.queueQualifiedName },
              continueParentOnFailure: true,
              attempts: job.opts.attempts,
              backoff: job.opts.backoff,
            },
          }
        }),
      )
      state = { ...state, step: 'waiting' }
      await job.updateData({ ...job.data, shardedExport: state })
    }
    const failed = Object.keys(await job.getFailedChildrenValues())
    if (failed.length > 0) {
      flowFailed = true
      throw await shardFailure(ctx, job, failed, state)
    }
    if (token === undefined) throw new ExportError('ERR_INVALID_OPTION', 'options', 'A sharded export needs the token BullMQ passes to the processor')
    if (await job.moveToWaitingChildren(token)) throw waitingChildren()

    if (state.split) return await completeSplit(ctx, job, state, commit)
    const results = Object.values(await job.getChildrenValues()) as ShardResult[]
    if (!state.completed) {
      const flow = state
      const { checksum } = await recordSpan('stream-export commit', { 'stream_export.key': flow.key, 'stream_export.shards': results.length }, () =>
        assembleShards(
          s3,
          shardOf(ctx, flow),
          results,
          flow.jsonArray ? jsonArrayStart(flow.jsonArray.zstd ? 'zstd' : flow.jsonArray.gzip ? 'gzip' : undefined) : undefined,
        ),
      )
      // Saved before the pieces go: a retry after a crash then knows the object is complete.
      state = { ...state, completed: true, ...(checksum && { objectChecksum: checksum }) }
      await job.updateData({ ...job.data, shardedExport: state })
    }
    // The export has landed: pieces that cannot be removed are clutter, named in the result.
    const leftBehind = await removeStash(s3, shardOf(ctx, state)).catch(() => [`${state!.stashPrefix}*`])
    const rows = results.reduce((sum, r) => sum + r.rows, 0)
    const bytes = results.reduce((sum, r) => sum + r.bytes, 0)
    const url = await presignDownload(s3, { bucket, key: state.key, expiresIn: urlExpiresIn })
    await job.updateProgress({ rows, bytes, percent: 100 })
    const checksum = state.objectChecksum
    return {
      location: { bucket, key: state.key },
      rows,
      bytes,
      shards: results.length,
      url,
      ...(checksum && { checksum }),
      ...(leftBehind.length > 0 ? { leftBehind } : {}),
    }
  } catch (error) {
    if ((error as Error).name === 'WaitingChildrenError') throw error
    if (state && !state.completed && commit.landed === false && (flowFailed || isFinalAttempt(job))) {
      // No attempt will go on: everything the flow wrote goes, every object that can be removed.
      const removed = state.split
        ? // The marker first (a shard still running then removes its own parts), then whatever happens the listing.
          removeAll([flowMarkerKey(state.stashPrefix)], (key) => deleteObject({ client: s3, bucket, key })).then(async (marker) => [
            ...marker,
            ...(await removeAll(await flowObjects((prefix) => listKeys(s3, bucket, prefix), state!), (key) => deleteObject({ client: s3, bucket, key }))),
          ])
        : discardShards(s3, shardOf(ctx, state))
      const left = await removed.catch((cleanup: Error) => [`${state!.stashPrefix}* (${cleanup.message})`])
      if (left.length > 0 && error instanceof ExportError) error.leftBehind = left
    }
    throw error
  }
}

/** Plans the ranges and creates the upload, saved before any child exists. */
async function start(ctx: ShardedContext, job: ShardedExportJob): Promise<ShardedExportState> {
  const { s3, bucket, prefix, plan, resolve } = ctx
  const spec = await resolve(job, { range: { index: 0 } })
  ;(spec.source as Partial<Readable>).destroy?.()
  spec.format.destroy()
  checkShardSpec(spec, spec.split !== undefined || spec.partitionBy !== undefined)
  const compression = compressionOfSpec(spec)
  if (spec.key !== undefined) checkString('key', spec.key)
  const jobKey = exportKey({ prefix, jobId: String(job.id), format: spec.format, compression })
  const key = spec.partitionBy === undefined ? (spec.key ?? jobKey) : templateOf(spec, jobKey)
  const ranges = await plan(job)
  if (!Array.isArray(ranges) || ranges.length === 0) invalidOption('plan', 'a function resolving to key ranges (planShards)', ranges)
  reservePartNumbers(ranges.length)
  // Everything the flow writes apart carries its run: a failed flow removes only its own.
  const run = newRunId()
  if (spec.partitionBy !== undefined) {
    // Each shard a partitioned export of its range (complete files, cut further by `split`).
    const split = spec.split === undefined ? {} : checkSplitOptions(spec.split)
    const { template, manifestName } = checkPartitionBy(spec.partitionBy, key)
    const full = template.base + template.relative // (Hive folders included)
    await claimManifest(partStore(ctx, manifestName), { ...partsKind(spec.format, compression && { name: compression }), name: template.relative })
    const state: ShardedExportState = { step: 'planned', key: full, stashPrefix: partitionedFlowPrefix(full, run), ranges, split, partitioned: true }
    await job.updateData({ ...job.data, shardedExport: state })
    return state
  }
  if (spec.split !== undefined) {
    const split = checkSplitOptions(spec.split)
    // Two exports never share a manifest: refused before any shard runs.
    await claimManifest(partStore(ctx, key), { format: spec.format.extension ?? 'bin', compression: compression ?? 'none' })
    const state: ShardedExportState = { step: 'planned', key, stashPrefix: splitShardPrefix(key, run), ranges, split }
    await job.updateData({ ...job.data, shardedExport: state })
    return state
  }
  const stashPrefix = `${key}.shards/${run}/`
  // What an attempt that died here before saving left: an upload nobody knows.
  const target = { client: s3, bucket, key }
  await abortOtherUploads(target)
  const { uploadId: UploadId, checksum } = await MultipartUpload.create(
    target,
    { ContentType: compression ? COMPRESSION_CONTENT_TYPES[compression] : spec.format.contentType },
    isGcsClient(s3) ? undefined : 'CRC64NVME', // (GCS refuses the checksum headers: docs/gcs.md)
  )
  const state: ShardedExportState = {
    step: 'planned',
    key,
    uploadId: UploadId,
    ...(checksum && { checksum }),
    stashPrefix,
    ranges,
    ...(isJsonArray(spec.format) ? { jsonArray: { gzip: compression === 'gzip', zstd: compression === 'zstd' } } : {}),
  }
  await job.updateData({ ...job.data, shardedExport: state })
  return state
}

/**
 * A split flow's commit: one manifest of every shard's parts (see assembleSplitShards), or, when
 * an attempt before this one committed and died before saying so, the manifest it wrote.
 */
async function completeSplit(
  ctx: ShardedContext,
  job: ShardedExportJob,
  state: ShardedExportState,
  commit: { landed: boolean | 'unknown' },
): Promise<ShardedExportResult> {
  const { s3, bucket, urlExpiresIn } = ctx
  const store = partStore(ctx, state.partitioned ? manifestNameOf(parseTemplate(state.key)) : state.key)
  const where = manifestPath(store.name)
  const results = Object.values(await job.getChildrenValues()) as SplitShardResult[]
  let manifest: Manifest<S3Location>
  let leftBehind: string[] = []
  if (state.completed) {
    const bytes = await store.read(where)
    if (bytes === undefined) throw new ExportError('ERR_SINK', 'sink', `The manifest ${where} this flow committed is gone`)
    manifest = parseManifest<S3Location>(bytes, where)
  } else {
    const outcome = await recordSpan('stream-export commit', { 'stream_export.key': where, 'stream_export.shards': results.length }, () =>
      assembleSplitShards(store, state, results),
    )
    commit.landed = outcome.landed
    if (outcome.landed !== true) {
      if (outcome.landed === false) throw toExportError(outcome.error, 'ERR_SINK', 'sink')
      throw new ExportError('ERR_SINK', 'sink', `Writing ${where} failed and whether it landed is unknown: every part is kept`, { cause: outcome.error })
    }
    ;({ manifest, leftBehind } = outcome)
    await job.updateData({ ...job.data, shardedExport: { ...state, completed: true } })
  }
  const presign = (key: string) => presignDownload(s3, { bucket, key, expiresIn: urlExpiresIn })
  const urls = await Promise.all(manifest.parts.map((part) => presign(part.location.key)))
  await job.updateProgress({ rows: manifest.rows, bytes: manifest.bytes, percent: 100 })
  return {
    location: store.locationOf(where),
    rows: manifest.rows,
    bytes: manifest.bytes,
    shards: results.length,
    url: await presign(where),
    parts: manifest.parts.length,
    urls,
    ...(state.partitioned ? { partitions: await partitionsOf(manifest.parts, parseTemplate(state.key).base, presign, bucket) } : {}),
    ...(leftBehind.length > 0 ? { leftBehind } : {}),
  }
}

/**
 * The error a failed child leaves (saved in its data), as the flow's: its code, and which shard. Of
 * several, the first to fail: those after it may have failed because the flow had (a retry of the
 * parent sees them all).
 */
async function shardFailure(ctx: ShardedContext, job: ShardedExportJob, childKeys: string[], state: ShardedExportState): Promise<ExportError> {
  const { queue } = ctx
  await job.removeUnprocessedChildren()
  const children = await Promise.all(childKeys.map((key) => queue.getJob(key.slice(key.lastIndexOf(':') + 1))))
  const child = children.reduce((first, next) => ((next?.finishedOn ?? Infinity) < (first?.finishedOn ?? Infinity) ? next : first), children[0])
  const shard = child?.data.exportShard as ShardAssignment | undefined
  const cause = child?.data.exportError as { code: ExportErrorCode; message: string } | undefined
  const which = shard ? `Shard ${shard.index + 1} of ${state.ranges.length}` : 'A shard'
  return new ExportError(cause?.code ?? 'ERR_SINK', 'export', `${which} of ${state.key} failed after its last attempt: ${cause?.message ?? 'unknown error'}`, {
    cause: child?.data.exportError,
  })
}
