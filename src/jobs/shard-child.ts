// The child jobs of a sharded flow: each exports its key range, as pieces of the parent's upload
// (checkpointed, resumed after a crash), or, for split output, as complete parts and a manifest.
import { ExportError, invalidOption, toExportError } from '../core/errors.js'
import { exportStream, type ExportOptions } from '../pipeline/export-stream.js'
import type { ExportCheckpoint } from '../sinks/s3/resumable.js'
import { ShardUpload, type ShardResult } from '../sinks/s3/shards.js'
import { newRunId } from '../parts/names.js'
import { s3Sink } from '../sinks/s3/sink.js'
import { jsonText } from '../parts/manifest.js'
import { flowMarkerKey, partitionedShardTemplate, splitShardKey, type SplitShardResult } from './sharded-split.js'
import type { PartitionOptions } from '../parts/partition-options.js'
import { deleteObject, headObject, type S3Location } from '../sinks/s3/client.js'
import { removeAll } from '../core/remove-all.js'
import { holdSource } from './held-source.js'
import { isFinalAttempt, pipelineOf, type ExportSpec, type ShardedContext, type ShardedExportJob } from './types.js'

/** The last attempt's error, saved for the parent (a failed child's return value is not kept). */
async function failedAttempt(job: ShardedExportJob, error: unknown) {
  const e = error as ExportError
  if (isFinalAttempt(job)) await job.updateData({ ...job.data, exportError: { code: e.code ?? 'ERR_UNKNOWN', message: e.message } }).catch(() => {})
}

/** A split flow's shard: its range as complete parts and their manifest; a retry writes them again. */
export async function runSplitShard(ctx: ShardedContext, job: ShardedExportJob): Promise<SplitShardResult> {
  const { s3, bucket, resolve, progressIntervalMs } = ctx
  const shard = job.data.exportShard!
  // Whether the flow still goes on (its marker is there): a flow planned before markers existed has none to look at.
  const flowGoesOn = async () => !shard.flowMarker || (await headObject({ client: s3, bucket, key: flowMarkerKey(shard.stashPrefix) })) !== undefined
  const gone = (what: string) => new ExportError('ERR_SINK', 'sink', `The flow exporting ${shard.key} failed ${what}`)
  try {
    // A retry of a shard whose flow has failed exports nothing.
    if (!(await flowGoesOn())) throw gone('before this shard ran: it wrote nothing')
    const spec = await resolve(job, { range: shard.range, after: shard.range.after })
    let target: Pick<ExportOptions<S3Location>, 'split' | 'partitionBy' | 'sink'>
    try {
      checkShardSpec(spec, true)
      target = shard.partitioned
        ? // A partitioned export of the range, under names of this attempt's own; `split` when it has limits.
          {
            partitionBy: shardPartitionBy(spec),
            split: shard.split?.rows === undefined && shard.split?.bytes === undefined ? undefined : shard.split,
            sink: s3Sink({ client: s3, bucket, key: partitionedShardTemplate(shard, shard.index, newRunId()) }),
          }
        : { split: shard.split, sink: s3Sink({ client: s3, bucket, key: splitShardKey(shard.stashPrefix, shard.key, shard.index, newRunId()) }) }
    } catch (error) {
      holdSource(spec).discard()
      throw error
    }
    const result = await exportStream({
      ...pipelineOf(spec),
      ...target,
      progressIntervalMs,
      onProgress: ({ rows, bytes }) => void job.updateProgress({ shard: shard.index, rows, bytes }).catch(() => {}),
    })
    // The flow may have failed meanwhile (its marker removed): nothing would list these parts. If
    // that cannot be told, they go too (a retry writes them again).
    const goesOn = await flowGoesOn().catch((error: unknown) => toExportError(error, 'ERR_SINK', 'sink'))
    if (goesOn !== true) {
      const written = [...(result.parts ?? []).map((part) => part.location.key), (result.location as S3Location).key]
      const left = await removeAll(written, (key) => deleteObject({ client: s3, bucket, key }))
      const error = goesOn === false ? gone('while this shard ran: the parts it wrote were removed') : goesOn
      if (left.length > 0) error.leftBehind = left
      throw error
    }
    const { format, contentType, compression, columns } = result.manifest!
    const returned: SplitShardResult = {
      index: shard.index,
      rows: result.rows,
      bytes: result.bytes,
      files: result.parts as SplitShardResult['files'],
      manifest: { format, contentType, compression, columns },
    }
    return JSON.parse(jsonText(returned)) as SplitShardResult // a job's value is JSON: a bigint key as text
  } catch (error) {
    await failedAttempt(job, error)
    throw error
  }
}

export async function runShard(ctx: ShardedContext, job: ShardedExportJob): Promise<ShardResult> {
  const { s3, resolve, partSize, progressIntervalMs } = ctx
  const shard = job.data.exportShard!
  const saved = job.data.exportCheckpoint
  const save = (checkpoint: ExportCheckpoint) => job.updateData({ ...job.data, exportCheckpoint: checkpoint })
  const upload = new ShardUpload({ client: s3, shard, partSize, checkpoint: saved, onCheckpoint: save })
  const gone = () => new ExportError('ERR_SINK', 'sink', `The upload of ${shard.key} is gone: the flow failed or was aborted`)
  try {
    // Every piece was uploaded by an attempt that died before it returned.
    if (!saved?.ended) {
      const spec = await resolve(job, { range: shard.range, after: saved === undefined ? shard.range.after : (saved.lastKey ?? shard.range.after) })
      const { started, discard } = holdSource(spec)
      try {
        checkShardSpec(spec, false)
        if (!(await upload.exists())) throw gone()
        started()
      } catch (error) {
        discard()
        throw error
      }
      await exportStream({
        ...pipelineOf(spec),
        sink: upload,
        progressIntervalMs,
        onProgress: ({ rows, bytes }) => void job.updateProgress({ shard: shard.index, rows: (saved?.rows ?? 0) + rows, bytes }).catch(() => {}),
      })
    }
    // The flow may have failed meanwhile: then nothing will join this shard's pieces.
    if (!(await upload.exists())) throw gone()
    const { rows, bytes, parts } = upload.checkpoint
    return { index: shard.index, rows, bytes, parts }
  } catch (error) {
    if (!(await upload.exists().catch(() => true))) await upload.discard().catch(() => {})
    await failedAttempt(job, error)
    throw error
  }
}

/**
 * The spec's partitionBy for a shard of a partitioned flow: its key template already has the Hive
 * folders (the parent's state holds the template as the partitions are named).
 */
function shardPartitionBy(spec: ExportSpec): PartitionOptions {
  if (spec.partitionBy === undefined) invalidOption('partitionBy', 'the partitionBy of the flow (resolve gave none for this shard)', spec.partitionBy)
  const options = typeof spec.partitionBy === 'object' && !Array.isArray(spec.partitionBy) ? spec.partitionBy : { by: spec.partitionBy }
  return { ...options, hive: false }
}

type ShardFormat = ExportSpec['format'] & { encoder?: { end(rows: number): string }; nextSegment?: unknown }

/** This library's jsonArray(): its `]` is written by the last shard, its `[` mended by the parent. */
export const isJsonArray = (format: ShardFormat) => format.extension === 'json' && format.encoder?.end(0) === '[]\n'

/**
 * A shard is a keyset source (to resume and to stop at its range's end) and a text format whose
 * end is empty once rows were written (csv(), jsonl()), or a JSON array (see `jsonArrayStart`).
 */
export function checkShardSpec(spec: ExportSpec, split: boolean): void {
  const source = spec.source as { keyOf?: unknown }
  if (typeof source.keyOf !== 'function') invalidOption('source', 'a keyset source (postgresKeysetSource) for a sharded export', spec.source)
  if (split) return // parts are complete files: any format of this library (exportStream checks it)
  const format = spec.format as ShardFormat
  if (typeof format.nextSegment !== 'function' || (format.encoder?.end(1) !== '' && !isJsonArray(format)))
    invalidOption('format', 'csv(), jsonl() or jsonArray() for a sharded export', spec.format)
}
