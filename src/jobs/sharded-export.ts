// A sharded export as a BullMQ flow: the parent job plans key ranges, creates one multipart upload
// and adds one child job per range to the same queue; each child exports its range as parts of
// that upload (checkpointed, resumed after a crash); the parent, run again once every child is
// done, completes the upload in key order. One object, each row once, in order. With `split`, the
// shards write complete parts instead and the parent one manifest of them (sharded-split.ts).
import type { Readable } from 'node:stream'
import { ExportError, invalidOption, type ExportErrorCode } from '../errors.js'
import { exportStream } from '../export-stream.js'
import { checkFunction, checkObject, checkString, checkTimerMs } from '../options.js'
import { abortOtherUploads, loadS3, send } from '../sinks/s3-multipart.js'
import { exportKey, presignDownload } from '../sinks/presign.js'
import type { ExportCheckpoint } from '../sinks/s3-resumable.js'
import { MIN_PART_SIZE, type S3ClientLike, type S3Location } from '../sinks/s3.js'
import {
  assembleShards,
  discardShards,
  jsonArrayStart,
  removeStash,
  reservePartNumbers,
  ShardUpload,
  type ShardAssignment,
  type ShardResult,
} from '../sinks/s3-shard.js'
import type { ShardRange } from '../sources/postgres-shards.js'
import { GZIP_CONTENT_TYPE } from '../stages/gzip.js'
import { s3Sink } from '../sinks/s3.js'
import { checkSplitOptions, type SplitOptions } from '../split-export.js'
import { assembleSplitShards, jsonText, splitShardKey, splitShardPrefix, type SplitShardResult } from './sharded-split.js'
import type { ExportSpec } from '../bullmq.js'

/** The part of a BullMQ Job (5.58 or later) a sharded export uses. */
export interface ShardedExportJob {
  id?: string
  name: string
  data: Record<string, unknown> & {
    shardedExport?: ShardedExportState
    exportShard?: ShardAssignment & { range: ShardRange; split?: SplitOptions }
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
  getJob(id: string): Promise<{ data: Record<string, unknown> } | undefined>
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
  ranges: ShardRange[]
  /** A JSON array (gzipped or not): the parent mends its start (see `jsonArrayStart`). */
  jsonArray?: { gzip: boolean }
  /** The upload was completed: the export has landed. */
  completed?: boolean
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

/** A range's export; with `split`, the shards write complete parts and the parent a manifest of them. */
export interface ShardedExportSpec extends ExportSpec {
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
}

const waitingChildren = () => Object.assign(new Error('Waiting for the shards of the export'), { name: 'WaitingChildrenError' })

/**
 * A BullMQ processor for sharded exports (see docs/shards.md):
 * `new Worker('exports', createShardedExportProcessor({ s3, bucket, queue, plan, resolve }), { connection })`,
 * then `queue.add('statements', { table: 'statements' }, { attempts: 3 })`. A job is a parent: it
 * plans the ranges, creates the upload, adds a child job per range (with its own attempts) and
 * waits; each child writes its range into a reserved range of part numbers, checkpointed after
 * every part; the parent completes the upload once all are done. With `split` in the spec, each
 * child writes complete parts and the parent one manifest of them instead. A child out of attempts
 * fails the flow: the parent aborts the upload, removes what the shards wrote, and fails with that
 * error.
 */
export function createShardedExportProcessor(
  options: ShardedExportProcessorOptions,
): (job: ShardedExportJob, token?: string) => Promise<ShardedExportResult | ShardResult | SplitShardResult> {
  checkObject('options', options)
  const { s3, bucket, queue, prefix = 'exports', plan, resolve, urlExpiresIn = 86_400, partSize = 8 * 1024 * 1024, progressIntervalMs = 1000 } = options
  checkString('bucket', bucket)
  if (typeof queue?.addBulk !== 'function' || typeof queue.getJob !== 'function') invalidOption('queue', 'the BullMQ Queue the worker takes jobs from', queue)
  checkFunction('plan', plan)
  checkFunction('resolve', resolve)
  checkTimerMs('progressIntervalMs', progressIntervalMs)
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) invalidOption('partSize', `an integer of at least 5 MiB (${MIN_PART_SIZE})`, partSize)

  /** The last attempt's error, saved for the parent (a failed child's return value is not kept). */
  const failedAttempt = async (job: ShardedExportJob, error: unknown) => {
    const e = error as ExportError
    if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1))
      await job.updateData({ ...job.data, exportError: { code: e.code ?? 'ERR_UNKNOWN', message: e.message } }).catch(() => {})
  }

  /** A split flow's shard: its range as complete parts and their manifest; a retry writes them again. */
  const runSplitShard = async (job: ShardedExportJob): Promise<SplitShardResult> => {
    const shard = job.data.exportShard!
    try {
      const spec = await resolve(job, { range: shard.range, after: shard.range.after })
      checkShardSpec(spec, true)
      const result = await exportStream({
        source: spec.source,
        format: spec.format,
        gzip: spec.gzip,
        transform: spec.transform,
        split: shard.split,
        sink: s3Sink({ client: s3, bucket, key: splitShardKey(shard.key, shard.index) }),
        progressIntervalMs,
        onProgress: ({ rows, bytes }) => void job.updateProgress({ shard: shard.index, rows, bytes }).catch(() => {}),
      })
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

  const runShard = async (job: ShardedExportJob): Promise<ShardResult> => {
    const shard = job.data.exportShard!
    const saved = job.data.exportCheckpoint
    const save = (checkpoint: ExportCheckpoint) => job.updateData({ ...job.data, exportCheckpoint: checkpoint })
    const upload = new ShardUpload({ client: s3, shard, partSize, checkpoint: saved, onCheckpoint: save })
    const gone = () => new ExportError('ERR_SINK', 'sink', `The upload of ${shard.key} is gone: the flow failed or was aborted`)
    try {
      // Every piece was uploaded by an attempt that died before it returned.
      if (!saved?.ended) {
        const spec = await resolve(job, { range: shard.range, after: saved === undefined ? shard.range.after : (saved.lastKey ?? shard.range.after) })
        checkShardSpec(spec, false)
        if (!(await upload.exists())) throw gone()
        await exportStream({
          ...spec,
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

  const runParent = async (job: ShardedExportJob, token: string | undefined): Promise<ShardedExportResult> => {
    let state = job.data.shardedExport
    let flowFailed = false
    try {
      if (!state) state = await start(job)
      if (state.step === 'planned') {
        const { partCount, firstPart } = reservePartNumbers(state.ranges.length)
        const { shardedExport: _, ...data } = job.data
        await queue.addBulk(
          state.ranges.map((range) => {
            const assignment: ShardAssignment = {
              ...shardOf(state!),
              index: range.index,
              shards: state!.ranges.length,
              firstPart: firstPart(range.index),
              partCount,
              ...(state!.jsonArray ? { jsonArray: true } : {}),
            }
            return {
              name: `${job.name}.shard`,
              data: { ...data, exportShard: { ...assignment, range, ...(state!.split ? { split: state!.split } : {}) } },
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
        throw await shardFailure(job, failed[0]!, state)
      }
      if (token === undefined) throw new ExportError('ERR_INVALID_OPTION', 'options', 'A sharded export needs the token BullMQ passes to the processor')
      if (await job.moveToWaitingChildren(token)) throw waitingChildren()

      if (state.split) return await completeSplit(job, state)
      const results = Object.values(await job.getChildrenValues()) as ShardResult[]
      if (!state.completed) {
        await assembleShards(s3, shardOf(state), results, state.jsonArray ? jsonArrayStart(state.jsonArray.gzip) : undefined)
        // Saved before the pieces go: a retry after a crash then knows the object is complete.
        state = { ...state, completed: true }
        await job.updateData({ ...job.data, shardedExport: state })
      }
      await removeStash(s3, shardOf(state)).catch(() => {}) // the export has landed; left pieces are only clutter
      const rows = results.reduce((sum, r) => sum + r.rows, 0)
      const bytes = results.reduce((sum, r) => sum + r.bytes, 0)
      const url = await presignDownload(s3, { bucket, key: state.key, expiresIn: urlExpiresIn })
      await job.updateProgress({ rows, bytes, percent: 100 })
      return { location: { bucket, key: state.key }, rows, bytes, shards: results.length, url }
    } catch (error) {
      if ((error as Error).name === 'WaitingChildrenError') throw error
      if (state && !state.completed && (flowFailed || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)))
        await (state.split ? removeStash(s3, { bucket, stashPrefix: state.stashPrefix }) : discardShards(s3, shardOf(state))).catch(() => {})
      throw error
    }
  }

  /** Plans the ranges and creates the upload, saved before any child exists. */
  const start = async (job: ShardedExportJob): Promise<ShardedExportState> => {
    const spec = await resolve(job, { range: { index: 0 } })
    ;(spec.source as Partial<Readable>).destroy?.()
    spec.format.destroy()
    checkShardSpec(spec, spec.split !== undefined)
    const gzip = spec.gzip ?? false
    if (spec.key !== undefined) checkString('key', spec.key)
    const key = spec.key ?? exportKey({ prefix, jobId: String(job.id), format: spec.format, gzip })
    const ranges = await plan(job)
    if (!Array.isArray(ranges) || ranges.length === 0) invalidOption('plan', 'a function resolving to key ranges (planShards)', ranges)
    reservePartNumbers(ranges.length)
    if (spec.split !== undefined) {
      const split = checkSplitOptions(spec.split)
      const state: ShardedExportState = { step: 'planned', key, stashPrefix: splitShardPrefix(key), ranges, split }
      await removeStash(s3, { bucket, stashPrefix: state.stashPrefix }) // what an attempt that died here left
      await job.updateData({ ...job.data, shardedExport: state })
      return state
    }
    const stashPrefix = `${key}.shards/`
    // What an attempt that died here before saving left: an upload nobody knows, pieces.
    await abortOtherUploads(s3, bucket, key)
    await removeStash(s3, { bucket, stashPrefix })
    const s3Commands = loadS3()
    const { UploadId } = await send<{ UploadId: string }>(
      s3,
      new s3Commands.CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: gzip ? GZIP_CONTENT_TYPE : spec.format.contentType }),
    )
    const state: ShardedExportState = {
      step: 'planned',
      key,
      uploadId: UploadId,
      stashPrefix,
      ranges,
      ...(isJsonArray(spec.format) ? { jsonArray: { gzip } } : {}),
    }
    await job.updateData({ ...job.data, shardedExport: state })
    return state
  }

  const shardOf = (state: ShardedExportState) => ({ bucket, key: state.key, uploadId: state.uploadId ?? '', stashPrefix: state.stashPrefix })

  /** A split flow's commit: one manifest of every shard's parts (see assembleSplitShards). */
  const completeSplit = async (job: ShardedExportJob, state: ShardedExportState): Promise<ShardedExportResult> => {
    const results = Object.values(await job.getChildrenValues()) as SplitShardResult[]
    const { manifest, location } = await assembleSplitShards(s3, bucket, state.key, results)
    await job.updateData({ ...job.data, shardedExport: { ...state, completed: true } })
    const presign = (key: string) => presignDownload(s3, { bucket, key, expiresIn: urlExpiresIn })
    const urls = await Promise.all(manifest.parts.map((part) => presign(part.location.key)))
    await job.updateProgress({ rows: manifest.rows, bytes: manifest.bytes, percent: 100 })
    return {
      location,
      rows: manifest.rows,
      bytes: manifest.bytes,
      shards: results.length,
      url: await presign(location.key),
      parts: manifest.parts.length,
      urls,
    }
  }

  /** The error a failed child leaves (saved in its data), as the flow's: its code, and which shard. */
  const shardFailure = async (job: ShardedExportJob, childKey: string, state: ShardedExportState): Promise<ExportError> => {
    await job.removeUnprocessedChildren()
    const child = await queue.getJob(childKey.slice(childKey.lastIndexOf(':') + 1))
    const shard = child?.data.exportShard as ShardAssignment | undefined
    const cause = child?.data.exportError as { code: ExportErrorCode; message: string } | undefined
    const which = shard ? `Shard ${shard.index + 1} of ${state.ranges.length}` : 'A shard'
    return new ExportError(
      cause?.code ?? 'ERR_SINK',
      'export',
      `${which} of ${state.key} failed after its last attempt: ${cause?.message ?? 'unknown error'}`,
      {
        cause: child?.data.exportError,
      },
    )
  }

  return (job, token) => (job.data.exportShard ? (job.data.exportShard.split ? runSplitShard(job) : runShard(job)) : runParent(job, token))
}

type ShardFormat = ExportSpec['format'] & { encoder?: { end(rows: number): string }; nextSegment?: unknown }

/** This library's jsonArray(): its `]` is written by the last shard, its `[` mended by the parent. */
const isJsonArray = (format: ShardFormat) => format.extension === 'json' && format.encoder?.end(0) === '[]\n'

/**
 * A shard is a keyset source (to resume and to stop at its range's end) and a text format whose
 * end is empty once rows were written (csv(), jsonl()), or a JSON array (see `jsonArrayStart`).
 */
function checkShardSpec(spec: ExportSpec, split: boolean): void {
  const source = spec.source as { keyOf?: unknown }
  if (typeof source.keyOf !== 'function') invalidOption('source', 'a keyset source (postgresKeysetSource) for a sharded export', spec.source)
  if (split) return // parts are complete files: any format of this library (exportStream checks it)
  const format = spec.format as ShardFormat
  if (typeof format.nextSegment !== 'function' || (format.encoder?.end(1) !== '' && !isJsonArray(format)))
    invalidOption('format', 'csv(), jsonl() or jsonArray() for a sharded export', spec.format)
}
