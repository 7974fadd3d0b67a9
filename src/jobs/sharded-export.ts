// A sharded export as a BullMQ flow: the parent job plans key ranges, creates one multipart upload
// and adds one child job per range to the same queue; each child exports its range as parts of
// that upload (checkpointed, resumed after a crash); the parent, run again once every child is
// done, completes the upload in key order. One object, each row once, in order. With `split`, the
// shards write complete parts instead and the parent one manifest of them (sharded-split.ts).
import { invalidOption } from '../core/errors.js'
import { checkFunction, checkObject, checkPositiveInteger, checkString, checkTimerMs, optionNames } from '../core/options.js'
import { checkPartSize } from '../sinks/s3/multipart.js'
import type { ShardResult } from '../sinks/s3/shards.js'
import { runShard, runSplitShard } from './shard-child.js'
import { runParent } from './shard-parent.js'
import type { SplitShardResult } from './sharded-split.js'
import { SHARDED_SPEC_NAMES, type ShardedContext, type ShardedExportJob, type ShardedExportProcessorOptions, type ShardedExportResult } from './types.js'

const SHARDED_EXPORT_PROCESSOR_OPTION_NAMES = optionNames<ShardedExportProcessorOptions>({
  s3: true,
  bucket: true,
  queue: true,
  prefix: true,
  plan: true,
  resolve: true,
  urlExpiresIn: true,
  partSize: true,
  progressIntervalMs: true,
})

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
  checkObject('options', options, SHARDED_EXPORT_PROCESSOR_OPTION_NAMES)
  const { s3, bucket, queue, prefix = 'exports', plan, resolve, urlExpiresIn = 86_400, partSize = 8 * 1024 * 1024, progressIntervalMs = 1000 } = options
  checkString('bucket', bucket)
  if (typeof queue?.addBulk !== 'function' || typeof queue.getJob !== 'function') invalidOption('queue', 'the BullMQ Queue the worker takes jobs from', queue)
  checkFunction('plan', plan)
  checkFunction('resolve', resolve)
  checkTimerMs('progressIntervalMs', progressIntervalMs)
  checkPositiveInteger('urlExpiresIn', urlExpiresIn)
  checkPartSize('partSize', partSize)
  // resolve's answer is checked as options are: an unknown key is refused, not ignored.
  const checkedResolve: typeof resolve = async (job, context) => {
    const spec = await resolve(job, context)
    try {
      checkObject('spec', spec, SHARDED_SPEC_NAMES)
    } catch (error) {
      ;(spec?.source as { destroy?(): void } | undefined)?.destroy?.() // its connection goes back
      throw error
    }
    return spec
  }
  const ctx: ShardedContext = { s3, bucket, queue, prefix, plan, resolve: checkedResolve, urlExpiresIn, partSize, progressIntervalMs }
  return (job, token) => (job.data.exportShard ? (job.data.exportShard.split ? runSplitShard(ctx, job) : runShard(ctx, job)) : runParent(ctx, job, token))
}
