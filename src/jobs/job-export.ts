// The export of a plain job, up to its commit: partitioned (an object per partition and a
// manifest), resumable (one multipart upload checkpointed after every part: a keyset source and a
// text format) or started over (anything else). What comes after the commit is processor.ts's.
import { randomUUID } from 'node:crypto'
import { invalidOption } from '../core/errors.js'
import { COMPRESSION_CONTENT_TYPES, type CompressionName } from '../core/types.js'
import { exportStream } from '../pipeline/export-stream.js'
import type { S3Location } from '../sinks/s3/client.js'
import { sinkError } from '../sinks/s3/resumable.js'
import type { JobCheckpoint } from './job-store.js'
import { runPartitionedJob } from './partitioned-job.js'
import { pipelineOf, type ExportJob, type ExportJobResult, type ExportSpec, type JobExportContext, type JobExportHooks } from './types.js'

/** What a job's export committed. */
export interface JobExported {
  /** The commit's run: a partitioned export's, or one made for this commit. */
  run: string
  location: S3Location
  rows: number
  bytes: number
  checksum?: ExportJobResult['checksum']
  partitions?: ExportJobResult['partitions']
  watermark?: unknown
  /** This attempt continued an earlier one's upload (or kept its partitions). */
  resumed: boolean
}

/** Whether a spec's export is resumable: a keyset source and a text format. */
const isResumable = (spec: ExportSpec): boolean =>
  typeof (spec.source as { keyOf?: unknown }).keyOf === 'function' && typeof spec.format.nextSegment === 'function'

/** Runs a job's export to `key` (a partitioned job's: its key template) and resolves at its commit. */
export async function runJobExport(
  context: JobExportContext,
  job: ExportJob,
  spec: ExportSpec,
  target: { key: string; compression: CompressionName | undefined },
  hooks: JobExportHooks,
): Promise<JobExported | { paused: true }> {
  const { store, progressIntervalMs, tags } = context
  const { key, compression } = target
  const saved = job.data.exportCheckpoint
  const save = (checkpoint: JobCheckpoint | undefined) => job.updateData({ ...job.data, exportCheckpoint: checkpoint })
  if (spec.partitionBy !== undefined) {
    if (spec.watermark) invalidOption('watermark', 'unset for a partitioned job (not supported yet)', spec.watermark)
    // (Its key template with the job's names filled: the partitions' stay.)
    return runPartitionedJob(context, job, { ...spec, ...(spec.key !== undefined ? { key } : {}), partitionBy: spec.partitionBy }, { ...hooks, jobKey: key })
  }
  if (isResumable(spec)) {
    // One multipart upload whose parts end on row boundaries, checkpointed after each: the
    // same pipeline as any export (transforms, progress, gzip on every core), in segments.
    const upload = store.resumable(key, {
      contentType: compression ? COMPRESSION_CONTENT_TYPES[compression] : spec.format.contentType,
      checkpoint: saved,
      onCheckpoint: save,
      tags,
    })
    const { pause, stop } = hooks.deadline ?? {}
    if (pause?.aborted) upload.pause()
    pause?.addEventListener('abort', () => upload.pause(), { once: true })
    const earlier = await upload.open()
    if (earlier) {
      // An earlier attempt completed the object and died before saying so: nothing to export.
      hooks.discard()
      return { run: randomUUID(), rows: saved!.rows, bytes: saved!.bytes, location: store.location(earlier), checksum: upload.checksum, resumed: true }
    }
    hooks.started()
    const startRows = saved?.rows ?? 0
    const startBytes = saved?.bytes ?? 0
    const exported = await exportStream({
      ...pipelineOf(spec),
      sink: upload,
      signal: stop,
      progressIntervalMs,
      // Percent and ETA over what is left: a keyset source counts from `after`.
      onProgress: (p) =>
        hooks.report({
          ...p,
          rows: startRows + p.rows,
          bytes: startBytes + p.bytes,
          totalRows: p.totalRows === undefined ? undefined : startRows + p.totalRows,
        }),
    })
    if (exported.paused) return { paused: true }
    return {
      run: randomUUID(),
      rows: startRows + exported.rows,
      bytes: startBytes + exported.bytes,
      location: store.location(exported.location!),
      checksum: exported.checksum,
      resumed: saved !== undefined,
    }
  }
  // Not resumable: uploads a crashed attempt left are aborted, and this attempt starts over.
  await store.clearLeftovers(key).catch((error: unknown) => {
    throw sinkError(error)
  })
  const marker = store.startMarker(key)
  if (marker) await save(marker)
  hooks.started()
  const exported = await exportStream({
    ...pipelineOf(spec),
    sink: store.sink(key, { tags, onStarted: save }),
    signal: hooks.deadline?.stop,
    progressIntervalMs,
    onProgress: hooks.report,
  })
  const { rows, bytes, checksum, watermark } = exported
  return { run: randomUUID(), rows, bytes, location: store.location(exported.location!), checksum, watermark, resumed: false }
}
