// The job types of stream-export/bullmq, in one module: the plain processor's and the sharded
// flow's (parent and child). BullMQ itself is the caller's (an optional peer dependency): these
// are the structural parts of its Job and Queue that the processors use.
import type { JobCheckpoint, JobStore } from './job-store.js'
import type { AzureContainerLike } from '../sinks/azure/client.js'
import type { ChecksumAlgorithm, ObjectChecksum } from '../core/checksum.js'
import type { ExportOptions } from '../pipeline/export-stream.js'
import type { SplitOptions } from '../parts/split-options.js'
import type { ShardRange } from '../shards/plan.js'
import type { S3ClientLike, S3Location } from '../sinks/s3/client.js'
import type { ExportCheckpoint } from '../sinks/s3/resumable.js'
import type { PartitionCheckpoint } from '../parts/partition-checkpoint.js'
import type { PartitionBy } from '../parts/partition-options.js'
import type { ShardAssignment } from '../sinks/s3/shards.js'
import type { CompressionName, Formatter } from '../core/types.js'
import type { Progress } from '../stages/progress.js'
import { invalidOption } from '../core/errors.js'
import { optionNames } from '../core/options.js'
import type { WatermarkStore } from '../pipeline/watermark-store.js'
import type { ExportNotification } from '../delivery/webhook.js'
import type { ExportLog } from '../delivery/export-log.js'
import type { Committed } from '../delivery/deliver.js'

/** The part of a BullMQ Job the processor uses. */
export interface ExportJob {
  id?: string
  /** The queue's name (BullMQ's Job has it): the export log's ids are `<queue>/<job id>`. */
  queueName?: string
  /** When the job was added (ms): with `opts.delay`, its names' `{date}`, the same in every attempt. */
  timestamp?: number
  data: Record<string, unknown> & { exportCheckpoint?: JobCheckpoint; exportPartitions?: PartitionedJobState; exportCommitted?: ExportJobCommitted }
  attemptsMade: number
  /** `prevMillis`: a job scheduler's run time of this job; `delay`: its delay when added. */
  opts: { attempts?: number; prevMillis?: number; delay?: number }
  updateProgress(progress: object): Promise<unknown>
  updateData(data: Record<string, unknown>): Promise<unknown>
}

/** What `resolve` returns for a job: the export's stages, as for exportStream. */
export interface ExportSpec {
  source: ExportOptions['source']
  format: Formatter
  gzip?: boolean
  /** `'zstd'` (or `'gzip'`, as `gzip: true`): the object is a `.zst` file. Set this or `gzip`. */
  compression?: CompressionName
  transform?: ExportOptions['transform']
  /**
   * The object's key, e.g. `orders/2026-11-23.csv.gz`, or a template of `{jobId}`, `{date}` /
   * `{date:yyyy-MM}` (when the job was due, UTC: a scheduler's run, or its adding plus its delay) and the `labels` (`exports/{tenant}/{jobId}.csv.gz`),
   * each value encoded so that none leaves its folder (docs/delivery.md#names). Default
   * `${prefix}/${job.id}.${ext}[.gz|.zst]`.
   */
  key?: string
  /**
   * The file name a download saves under (`Content-Disposition`, RFC 6266: non-ASCII kept), a
   * template as `key` is (a partitioned job's: with its partition's values too), e.g.
   * `Statements {tenant} {date:yyyy-MM}.csv.gz`. Default: the object's name.
   */
  filename?: string
  /** Values for the templates, the export log and the notifications, e.g. `{ tenant: 'Café Müller' }`. */
  labels?: Record<string, unknown>
  /**
   * Seconds the export lives after its commit: no link outlives it, and the expiry processor
   * (`createExpiryProcessor`, with `log`) deletes it then. Default: kept until you delete it.
   */
  expiresIn?: number
  /** Who asked for the export (a user id, an e-mail), for the export log and the notifications. */
  requestedBy?: string
  /** What identifies the source, e.g. `{ sql, params }`: the export log keeps its SHA-256. */
  fingerprint?: unknown
  /**
   * An incremental export (`postgresIncrementalSource`, built from `await store.load(name)`): the
   * source's next watermark is saved under `name` once the upload has completed, before the job
   * completes. If saving fails, the attempt fails and a retry exports the same rows again.
   */
  watermark?: { store: WatermarkStore; name: string }
  /**
   * A partitioned export (docs/partitions.md#jobs): an object per partition under `key`, a template
   * (`statements/{customer}.csv.gz`; default `${prefix}/${job.id}/{column}.ext`), and one manifest.
   * With a keyset source whose key begins with the partition columns, a retry keeps the partitions
   * that had landed and continues after them.
   */
  partitionBy?: PartitionBy
  /** The job's export at most this fast, as `exportStream`'s (docs/operations.md): the database reads less. */
  maxRowsPerSecond?: number
  maxBytesPerSecond?: number
  /** The job's export logs its events here, as `exportStream`'s `logger` (e.g. a pino child with the job's id). */
  logger?: ExportOptions['logger']
}

/**
 * What a job keeps in its data (`exportCommitted`) from its export's commit until it completes: an
 * attempt after a failure past the commit (a store down, a killed worker) delivers it, never exports again.
 */
export type ExportJobCommitted = Committed & {
  resumed: boolean
  watermark?: unknown
  /** The incremental job's watermark was saved (never again: a newer job's may follow). */
  watermarkSaved?: boolean
  /** The spec's delivery settings, as the attempt that committed had them. */
  delivery: Pick<ExportSpec, 'filename' | 'labels' | 'expiresIn' | 'requestedBy' | 'fingerprint'>
}

/** What a partitioned job keeps in its data (`exportPartitions`): its run and its checkpoint. */
export interface PartitionedJobState {
  bucket: string
  /** The key template, as the partitions are named (Hive folders included). */
  template: string
  checkpoint: PartitionCheckpoint
}

/** The keys of a job's spec: resolve's answer is checked for unknown ones (a misspelt `fileName`). */
export const EXPORT_SPEC_NAMES = optionNames<ExportSpec>({
  source: true,
  format: true,
  gzip: true,
  compression: true,
  transform: true,
  key: true,
  filename: true,
  labels: true,
  expiresIn: true,
  requestedBy: true,
  fingerprint: true,
  watermark: true,
  partitionBy: true,
  maxRowsPerSecond: true,
  maxBytesPerSecond: true,
  logger: true,
})

/**
 * An attempt with a deadline (a Lambda invocation): at `pause` a resumable export ends its part at
 * the next row once the part holds S3's minimum and stops there; at `stop` any export stops as a
 * crash would. Either way the job's data keeps the checkpoint another attempt continues from.
 */
export interface JobDeadline {
  pause: AbortSignal
  stop: AbortSignal
}

/** Hooks of a job's export (held-source.ts; the processor's progress report; a deadline). */
export interface JobExportHooks {
  started(): void
  discard(): void
  report(progress: Partial<Progress> & { rows: number }): void
  deadline?: JobDeadline
}

/** What a plain job's export runs with (job-export.ts, partitioned-job.ts). */
export interface JobExportContext {
  store: JobStore
  partSize: number
  urlExpiresIn: number
  progressIntervalMs: number
  /** Each object's tags (the expiry tag; a partitioned export's manifest's too). */
  tags?: Record<string, string>
}

/** The stages of a job's export, as exportStream takes them (`key` and `watermark` are the job's own). */
export function pipelineOf(
  spec: Pick<ExportSpec, 'source' | 'format' | 'gzip' | 'compression' | 'transform' | 'maxRowsPerSecond' | 'maxBytesPerSecond' | 'logger'>,
) {
  const { source, format, gzip, compression, transform, maxRowsPerSecond, maxBytesPerSecond, logger } = spec
  return { source, format, gzip, compression, transform, maxRowsPerSecond, maxBytesPerSecond, logger }
}

/** A partitioned spec's columns, which its key template names (`'any'`: a partitionBy function names its own). */
export function partitionColumnsOf(partitionBy: PartitionBy): ReadonlySet<string> | 'any' {
  const by = typeof partitionBy === 'object' && !Array.isArray(partitionBy) ? partitionBy.by : partitionBy
  return typeof by === 'function' ? 'any' : new Set(typeof by === 'string' ? [by] : Array.isArray(by) ? by : [])
}

/** The compression a spec asks for (`gzip: true` or `compression`), or none. */
export function compressionOfSpec(spec: Pick<ExportSpec, 'gzip' | 'compression'>): CompressionName | undefined {
  if (spec.compression !== undefined) {
    if (spec.gzip) invalidOption('compression', 'unset when `gzip` is set', spec.compression)
    if (spec.compression !== 'gzip' && spec.compression !== 'zstd') invalidOption('compression', "'gzip' or 'zstd'", spec.compression)
    return spec.compression
  }
  return spec.gzip ? 'gzip' : undefined
}

export interface ExportProcessorOptions {
  /** The S3 client (or a `gcsClient`); with `bucket`. Give `container` instead for Azure Blob Storage. */
  s3?: S3ClientLike
  bucket?: string
  /**
   * An Azure Blob Storage container (`BlobServiceClient.fromConnectionString(...).getContainerClient('exports')`)
   * instead of `s3` + `bucket`: each export a block blob (resumable from its staged blocks), links
   * are SAS URLs (the client must hold the account key), and the result's and the export log's
   * `bucket` and `key` are the container and the blob name. See docs/azure.md.
   */
  container?: AzureContainerLike
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
  /**
   * Called after a job's export succeeded (`partition.completed` for each partition of a
   * partitioned job, then `export.completed`) or finally failed before its commit (`export.failed`), e.g. `notifyWebhook({ url, secret })`, `notifyEmail({ transport, from, to })`.
   * A notification that fails never fails the committed export: the result's `notifyErrors` and the
   * export log say so, and the expiry processor sends it again.
   */
  notify?(notification: ExportNotification): unknown
  /** The export log (`postgresExportLog({ pool })`): every committed export is recorded there before its job completes. */
  log?: ExportLog
  /**
   * Tag each object of an export with `expiresIn` `stream-export-expires-in-days: <days>`, for an S3
   * lifecycle rule that deletes it (docs/delivery.md#expiry). Default false (a store without object
   * tags would fail the export).
   */
  expiryTag?: boolean
  /** The clock of the log and expiry (tests inject one). Default `() => new Date()`. */
  now?(): Date
  /** Called after a job's export succeeded, before the job completes (e.g. to e-mail the link). */
  onComplete?(result: ExportJobResult, job: ExportJob): unknown
}

export interface ExportJobResult {
  location: S3Location
  rows: number
  bytes: number
  /**
   * Presigned GET URL of the export (a partitioned job's: of its manifest); it saves under
   * `filename`. Empty when there is nothing left to link to: the export expired, or a later one at
   * the same key replaced it, before its job completed (a retry long after the commit).
   */
  url: string
  /** When `url` stops working (ISO 8601): `urlExpiresIn`, never past `expiresAt`. */
  urlExpiresAt: string
  /** When the export is deleted (ISO 8601), with the spec's `expiresIn`. */
  expiresAt?: string
  /** The file name the download saves under, with the spec's `filename`. */
  filename?: string
  /** Notifications that failed (the export has landed; the log records them, the expiry processor resends them). */
  notifyErrors?: string[]
  /** True when this attempt continued an earlier one's upload (or kept its partitions). */
  resumed: boolean
  /** The object's full checksum, of every part (earlier attempts' too); a partitioned job's are in its manifest. */
  checksum?: ObjectChecksum
  /** A partitioned job: its partitions in the order their first rows came (the location and URL above are the manifest's). */
  partitions?: Array<{ values: Record<string, unknown>; rows: number; bytes: number; locations: S3Location[]; urls: string[]; filename?: string }>
}

/** The part of a BullMQ Job (5.58 or later) a sharded export uses. */
export interface ShardedExportJob {
  id?: string
  name: string
  data: Record<string, unknown> & {
    shardedExport?: ShardedExportState
    /** `flowMarker`: the flow put its marker (see flowMarkerKey) before adding this shard. */
    exportShard?: ShardAssignment & { range: ShardRange; split?: SplitOptions; flowMarker?: true; partitioned?: true }
    exportCheckpoint?: ExportCheckpoint
  }
  attemptsMade: number
  opts: { attempts?: number; backoff?: unknown }
  queueQualifiedName: string
  updateProgress(progress: object): Promise<unknown>
  updateData(data: Record<string, unknown>): Promise<unknown>
  moveToWaitingChildren(token: string): Promise<boolean>
  getChildrenValues(): Promise<Record<string, unknown>>
  getFailedChildrenValues(): Promise<Record<string, string>>
  removeUnprocessedChildren(): Promise<void>
}

/** The part of a BullMQ Queue the parent uses: the queue its worker takes jobs from. */
export interface ShardQueue {
  addBulk(jobs: Array<{ name: string; data: object; opts: object }>): Promise<unknown>
  getJob(id: string): Promise<{ data: Record<string, unknown>; finishedOn?: number } | undefined>
}

/** What the parent saves in its job's data between its runs. */
export interface ShardedExportState {
  /** `planned`: the upload exists, the children may not; `waiting`: the children were added. */
  step: 'planned' | 'waiting'
  /** The object's key; a split flow's manifest and parts are named after it. */
  key: string
  /** The upload the shards write into; none for a split flow. */
  uploadId?: string
  /** The prefix of what the shards write apart: pieces to join, or a split flow's parts. */
  stashPrefix: string
  /** A split flow: each shard writes complete parts, the parent one manifest of them all. */
  split?: SplitOptions
  /** A partitioned flow (a split flow whose shards write partitions): `key` is the key template. */
  partitioned?: true
  ranges: ShardRange[]
  /** A JSON array (compressed or not): the parent mends its start (see `jsonArrayStart`). */
  jsonArray?: { gzip: boolean; zstd?: boolean }
  /** The upload was completed: the export has landed. */
  completed?: boolean
  /** The upload's full-object checksum algorithm: each shard's parts carry theirs. */
  checksum?: ChecksumAlgorithm
  /** The object's full checksum, saved with `completed`. */
  objectChecksum?: ObjectChecksum
}

export interface ShardedExportProcessorOptions {
  s3: S3ClientLike
  bucket: string
  /** The queue this processor's Worker takes jobs from: the parent adds its shards' jobs to it. */
  queue: ShardQueue
  /** Key prefix: objects are `${prefix}/${job.id}.${ext}[.gz]` unless the spec names a key. Default `exports`. */
  prefix?: string
  /** The key ranges of a parent job, e.g. `planShards({ pool, table, key: 'id', shards: 8 })`. */
  plan(job: ShardedExportJob): ShardRange[] | Promise<ShardRange[]>
  /**
   * The export of one range: a keyset source from `after` (the range's start, or where a crashed
   * attempt stopped) to `range.until`, a format (`csv()`, `jsonl()` or `jsonArray()`; with `split`,
   * any of this library) and gzip. Called for the parent too, with range 0, for the object's key,
   * type and `split` (its source is not read).
   */
  resolve(job: ShardedExportJob, context: { range: ShardRange; after?: unknown }): ShardedExportSpec | Promise<ShardedExportSpec>
  /** Lifetime of the presigned URL in the result. Default 86400 (a day). */
  urlExpiresIn?: number
  /** First part size; a shard's parts grow within its share of S3's 10,000. Default 8 MiB. */
  partSize?: number
  /** Time between a shard's job.updateProgress calls. Default 1000 ms. */
  progressIntervalMs?: number
}

/** The spec keys of delivery (names, labels, expiry, the log's fields): the plain processor's only, for now. */
type DeliveryKeys = 'filename' | 'labels' | 'expiresIn' | 'requestedBy' | 'fingerprint'

/** A range's export; with `split`, the shards write complete parts and the parent a manifest of them. */
export interface ShardedExportSpec extends Omit<ExportSpec, DeliveryKeys> {
  /** Write the export as parts of `rows` or `bytes` each (see docs/parts.md), each shard its own. */
  split?: SplitOptions
}

export interface ShardedExportResult {
  /** The object; a split flow's manifest. */
  location: S3Location
  rows: number
  bytes: number
  shards: number
  /** Presigned GET URL of the export (a split flow: of its manifest). */
  url: string
  /** A split flow: how many parts the manifest lists, and a presigned URL of each, in order. */
  parts?: number
  urls?: string[]
  /** A partitioned flow: its partitions, each with its objects and a presigned URL of each (a partition two shards wrote has a part from each). */
  partitions?: ExportJobResult['partitions']
  /** What could not be removed after the commit (pieces held apart; a split flow: the previous export's parts, the flow's leftovers). */
  leftBehind?: string[]
  /** The object's full checksum (CRC64NVME), combined from every shard's parts, as S3 verified it (not for split flows: their manifest has each part's). */
  checksum?: ObjectChecksum
}

/** A sharded processor's options, checked and defaulted: what its parent and child jobs run with. */
export type ShardedContext = Required<ShardedExportProcessorOptions>

/** Whether no attempt of this job comes after this one (BullMQ counts `attemptsMade` from 0). */
export const isFinalAttempt = (job: { attemptsMade: number; opts: { attempts?: number } }): boolean => job.attemptsMade + 1 >= (job.opts.attempts ?? 1)

/** The keys of a sharded job's spec (no delivery settings yet: see docs/delivery.md). */
export const SHARDED_SPEC_NAMES = optionNames<ShardedExportSpec>({
  source: true,
  format: true,
  gzip: true,
  compression: true,
  transform: true,
  key: true,
  watermark: true,
  partitionBy: true,
  maxRowsPerSecond: true,
  maxBytesPerSecond: true,
  logger: true,
  split: true,
})
