// A partitioned export job (`partitionBy` in the spec): one object per partition and one manifest,
// the commit point. The job's data holds the run and, with a keyset source, a checkpoint of the
// partitions that have landed: a retry after a crash keeps them and continues after their rows;
// a retry that finds the run's manifest committed answers from it (docs/partitions.md#jobs).
import { ExportError, invalidOption, toExportError } from '../core/errors.js'
import type { Manifest, PartStore } from '../core/types.js'
import { parseManifest } from '../parts/manifest.js'
import { manifestPath, nameParts, newRunId } from '../parts/names.js'
import { plainJson, removeRunParts, type PartitionCheckpoint } from '../parts/partition-checkpoint.js'
import { manifestNameOf, parseTemplate } from '../parts/partition-names.js'
import { checkPartitionBy, type PartitionBy, type PartitionOptions } from '../parts/partition-options.js'
import { exportStream } from '../pipeline/export-stream.js'
import type { S3Location } from '../sinks/s3/client.js'
import type { JobStore } from './job-store.js'
import {
  pipelineOf,
  type ExportJob,
  type ExportJobResult,
  type ExportSpec,
  type JobExportContext,
  type JobExportHooks,
  type PartitionedJobState,
} from './types.js'

/**
 * The key template of a partitioned job: the spec's, or the job's key as a folder of partition
 * columns (`exports/42/{customer}.csv.gz`; Hive style: `exports/42/42.csv.gz`, which becomes
 * `exports/42/customer={customer}/42.csv.gz`).
 */
export function templateOf(spec: ExportSpec, jobKey: string): string {
  if (spec.key !== undefined) return spec.key
  const options: Partial<PartitionOptions> =
    typeof spec.partitionBy === 'object' && !Array.isArray(spec.partitionBy) ? spec.partitionBy : { by: spec.partitionBy }
  const { by } = options
  if (typeof by === 'function' || by === undefined) return invalidOption('key', 'a key template naming the placeholders of a partitionBy function', spec.key)
  const { dir, stem, extensions } = nameParts(jobKey)
  if (options.hive === true) return `${dir}${stem}/${stem}${extensions}`
  return `${dir}${stem}/${(typeof by === 'string' ? [by] : by).map((column) => `{${column}}`).join('/')}${extensions}`
}

/** The spec's partitionBy with the job's checkpoint added (a spec's own checkpoint is refused). */
function withCheckpoint(partitionBy: PartitionBy, checkpoint: NonNullable<PartitionOptions['checkpoint']>): PartitionOptions {
  const options = typeof partitionBy === 'object' && !Array.isArray(partitionBy) ? partitionBy : { by: partitionBy }
  if (options.checkpoint !== undefined)
    invalidOption('partitionBy.checkpoint', 'unset in a job (the processor keeps the checkpoint in the job)', options.checkpoint)
  return { ...options, checkpoint }
}

/** The manifest of this run, if an earlier attempt committed it (every part it lists carries the run). */
async function committedManifest(state: PartitionedJobState, store: PartStore<object>, manifestName: string): Promise<Manifest<object> | undefined> {
  const where = manifestPath(manifestName)
  const bytes = await store.read(where).catch((error: unknown) => {
    throw toExportError(error, 'ERR_SINK', 'sink')
  })
  if (bytes === undefined) return undefined
  const manifest = parseManifest<object>(bytes, where)
  const ours = manifest.parts.length > 0 && manifest.parts.every((part) => part.name.includes(`-${state.checkpoint.run}-`))
  return ours ? manifest : undefined
}

export interface PartitionedJobOutcome {
  rows: number
  bytes: number
  location: S3Location
  partitions: NonNullable<ExportJobResult['partitions']>
  resumed: boolean
  /** The run whose manifest committed. */
  run: string
}

/** Runs a job whose spec has `partitionBy` (see createExportProcessor). */
export async function runPartitionedJob(
  context: JobExportContext,
  job: ExportJob,
  spec: ExportSpec & { partitionBy: PartitionBy },
  hooks: JobExportHooks & { jobKey: string },
): Promise<PartitionedJobOutcome> {
  const { store: jobStore, urlExpiresIn, progressIntervalMs, tags } = context
  const { bucket } = jobStore
  const key = templateOf(spec, hooks.jobKey)
  const settings = checkPartitionBy(spec.partitionBy, key)
  const template = settings.template.base + settings.template.relative
  const earlier = job.data.exportPartitions
  // A job continues its own export only: resolve was given the key its checkpoint continues after.
  if (earlier && (earlier.bucket !== bucket || earlier.template !== template))
    throw new ExportError(
      'ERR_INVALID_OPTION',
      'options',
      `An earlier attempt of this job exported to ${jobStore.describe(earlier.template, earlier.bucket)}, this one would export to ${jobStore.describe(template)}: resolve must give every attempt of a job the same key`,
    )
  const state: PartitionedJobState = earlier ?? { bucket, template, checkpoint: { version: 1, run: newRunId(), rows: 0, partitions: [] } }
  const store = jobStore.partStore(key)
  const save = (checkpoint: PartitionCheckpoint) => job.updateData({ ...job.data, exportPartitions: { ...state, checkpoint } })
  const presign = (partKey: string) => jobStore.sign(bucket, partKey, urlExpiresIn)

  const committed = earlier && (await committedManifest(state, store, settings.manifestName))
  if (committed) {
    // An earlier attempt committed and died before saying so: nothing to export.
    hooks.discard()
    return {
      rows: committed.rows,
      bytes: committed.bytes,
      location: jobStore.location(store.locationOf(manifestPath(settings.manifestName))),
      partitions: await partitionsOf(committed.parts, settings.template.base, presign, bucket),
      resumed: true,
      run: state.checkpoint.run,
    }
  }
  // The run is in the job before any part is written: a later attempt removes what this one leaves
  // (past its checkpoint: the export does that; all of it, when it saved none: here; and the
  // multipart uploads of the parts it was writing).
  if (!earlier) await save(state.checkpoint)
  else
    await jobStore
      .clearRunUploads(settings.template, state.checkpoint.run)
      .then(() => (earlier.checkpoint.partitions.length === 0 ? removeRunParts(store, settings.template, state.checkpoint.run, undefined) : undefined))
      .catch((error: unknown) => {
        throw toExportError(error, 'ERR_SINK', 'sink')
      })
  // The job's data is updated as often as its progress; from a deadline's pause on, after every
  // partition that lands, so that its stop loses little.
  const checkpoint = { from: state.checkpoint, save, intervalMs: progressIntervalMs, eager: hooks.deadline?.pause }
  hooks.started()
  const result = await exportStream({
    ...pipelineOf(spec),
    sink: jobStore.sink(key, { tags }),
    partitionBy: withCheckpoint(spec.partitionBy, checkpoint),
    signal: hooks.deadline?.stop,
    progressIntervalMs,
    onProgress: hooks.report,
  })
  return {
    rows: result.rows,
    bytes: result.manifest?.bytes ?? result.bytes,
    location: jobStore.location(result.location!),
    partitions: await partitionsOf(result.parts ?? [], settings.template.base, presign, bucket),
    resumed: state.checkpoint.partitions.length > 0,
    run: state.checkpoint.run,
  }
}

/** The partitions of a manifest's parts, in order, each with its objects and a presigned URL of each. */
export async function partitionsOf(
  parts: Manifest<object>['parts'],
  base: string,
  presign: (key: string) => Promise<string>,
  bucket: string,
): Promise<PartitionedJobOutcome['partitions']> {
  const byValues = new Map<string, PartitionedJobOutcome['partitions'][number]>()
  for (const part of parts) {
    const id = JSON.stringify(part.partition ?? {}, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value))
    // (The job's result is JSON: a bigint value as its text, a Date as its ISO text, as the manifest has them.)
    const partition = byValues.get(id) ?? { values: plainJson(part.partition ?? {}), rows: 0, bytes: 0, locations: [], urls: [] }
    byValues.set(id, partition)
    const key = base + part.name
    partition.rows += part.rows
    partition.bytes += part.bytes
    partition.locations.push({ bucket, key })
    partition.urls.push(await presign(key))
  }
  return [...byValues.values()]
}

/**
 * After a job's final failure: removes every object its run wrote (the partitions a checkpoint
 * kept too), unless the run's manifest has landed (then the export has succeeded). Resolves with
 * what it could not remove.
 */
export async function removePartitionedJob(jobStore: JobStore, state: PartitionedJobState): Promise<string[]> {
  const store = jobStore.partStore(state.template)
  const template = parseTemplate(state.template)
  if (await committedManifest(state, store, manifestNameOf(template))) return []
  await jobStore.clearRunUploads(template, state.checkpoint.run)
  return removeRunParts(store, template, state.checkpoint.run, undefined)
}
