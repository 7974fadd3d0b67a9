// The checkpoint of a partitioned export (`partitionBy.checkpoint`): the partitions that have
// landed before the first row of any that has not, and the source key where the rest begins. A
// run given it keeps those partitions (their parts are not written again), reads on after the key,
// and first removes what the interrupted run wrote past it (docs/partitions.md#resuming).
import { invalidOption } from '../core/errors.js'
import { checkFunction, checkNonNegativeInteger, checkObject, optionNames } from '../core/options.js'
import { removeAll } from '../core/remove-all.js'
import type { PartInfo, PartStore } from '../core/types.js'
import { jsonText } from './manifest.js'
import { partitionPartOf, type PartitionTemplate } from './partition-names.js'

/** A partition a checkpoint keeps: its values, its name before a case suffix, and its parts (JSON). */
export interface SavedPartition {
  values: Record<string, unknown>
  path: string
  rows: number
  parts: Array<PartInfo<object>>
}

/** What `partitionBy.checkpoint.save` is given (plain JSON: store it as it is). */
export interface PartitionCheckpoint {
  version: 1
  /** The run id in the names of every part of the export, whichever run wrote them. */
  run: string
  /** The source key the rest of the rows come after (a keyset source's `after`); absent: from the start. */
  after?: unknown
  /** Rows in the partitions below. */
  rows: number
  /** Partitions that have landed, in the order their first rows came. */
  partitions: SavedPartition[]
}

export interface PartitionCheckpointOptions {
  /** A checkpoint an interrupted run saved: this run keeps its partitions. Its source must begin after `from.after`. */
  from?: PartitionCheckpoint
  /** Saves a checkpoint (e.g. in a job's data); awaited; a failure fails the export. */
  save(checkpoint: PartitionCheckpoint): unknown
  /** The least time between two saves. Default 1000 ms. */
  intervalMs?: number
  /** From when this fires, a save after every partition that lands (a run nearing its deadline: a stop then loses little). */
  eager?: AbortSignal
}

const CHECKPOINT_OPTION_NAMES = optionNames<PartitionCheckpointOptions>({ from: true, save: true, intervalMs: true, eager: true })

export function checkCheckpointOption(option: unknown): Required<Pick<PartitionCheckpointOptions, 'save' | 'intervalMs'>> & PartitionCheckpointOptions {
  checkObject('partitionBy.checkpoint', option, CHECKPOINT_OPTION_NAMES)
  const { from, save, intervalMs = 1000, eager } = option as PartitionCheckpointOptions
  checkFunction('partitionBy.checkpoint.save', save)
  checkNonNegativeInteger('partitionBy.checkpoint.intervalMs', intervalMs)
  if (eager !== undefined && !(eager instanceof AbortSignal)) invalidOption('partitionBy.checkpoint.eager', 'an AbortSignal', eager)
  if (from !== undefined) {
    const wellFormed =
      typeof from === 'object' &&
      from !== null &&
      from.version === 1 &&
      typeof from.run === 'string' &&
      /^[0-9a-f]{8}$/.test(from.run) &&
      Number.isSafeInteger(from.rows) &&
      Array.isArray(from.partitions) &&
      from.partitions.every((p) => typeof p?.path === 'string' && typeof p.values === 'object' && Array.isArray(p.parts))
    if (!wellFormed) invalidOption('partitionBy.checkpoint.from', 'a checkpoint that partitionBy.checkpoint.save was given', from)
  }
  return { from, save, intervalMs, eager }
}

/** A partition of this run as the checkpoint follows it (rows numbered from 1 in this run). */
export interface FollowedPartition {
  firstRow: number
  lastRow: number
  /** The source key of the row before its first (`undefined`: none in this run). */
  keyBefore: unknown
  /** Every part has landed. */
  landed: boolean
  /** Its entry in a checkpoint, once it has landed. */
  saved: () => SavedPartition
}

/** JSON of a value (a bigint as its decimal text, a Date as its ISO text), as a job store keeps it. */
export const plainJson = <T>(value: T): T => JSON.parse(jsonText(value)) as T

/**
 * The checkpoint after the partitions of this run so far: the longest run of landed partitions
 * (first rows in order) none of which has a row after the first row of the next one; `undefined`
 * when it holds no more than `known` partitions of this run.
 */
export function nextCheckpoint(
  from: PartitionCheckpoint | undefined,
  run: string,
  partitions: FollowedPartition[],
  known: number,
): { checkpoint: PartitionCheckpoint; count: number } | undefined {
  let end = partitions.findIndex((partition) => !partition.landed)
  if (end === -1) return undefined // all landed: the commit is near, and the next row may start one
  for (let moved = true; moved;) {
    moved = false
    const edge = partitions[end]!.firstRow
    const late = partitions.findIndex((partition, i) => i < end && partition.lastRow >= edge)
    if (late !== -1) [end, moved] = [late, true]
  }
  if (end <= known) return undefined
  const kept = partitions.slice(0, end).map((partition) => partition.saved())
  const before = partitions[end]!.keyBefore
  const after = partitions[end]!.firstRow === 1 ? from?.after : before
  const saved = [...(from?.partitions ?? []), ...kept]
  const checkpoint: PartitionCheckpoint = {
    version: 1,
    run,
    ...(after === undefined ? {} : { after: plainJson(after) }),
    rows: saved.reduce((sum, partition) => sum + partition.rows, 0),
    partitions: saved,
  }
  return { checkpoint, count: end }
}

/**
 * Removes what a run wrote that a checkpoint does not list: the parts of `run` under the
 * template's folder (every name of this export's shape that carries the run id). Resolves with
 * what it could not remove.
 */
export async function removeRunParts(
  store: PartStore<object>,
  template: PartitionTemplate,
  run: string,
  keep: PartitionCheckpoint | undefined,
): Promise<string[]> {
  const ours = runPartOf(template, run)
  const kept = new Set((keep?.partitions ?? []).flatMap((partition) => partition.parts.map((part) => part.name)))
  const names = (await store.list(template.base)).filter((name) => ours(name) && !kept.has(name.slice(template.base.length).replaceAll('\\', '/')))
  return removeAll(names, (name) => store.remove(name))
}

/** Whether a path or key is a part of this partitioned export's `run` (`exports/acme-1a2b3c4d-00001.csv`). */
export function runPartOf(template: PartitionTemplate, run: string): (name: string) => boolean {
  const partOf = partitionPartOf(template)
  const numbered = new RegExp(`-${run}-\\d{5,}[^/\\\\]*$`)
  return (name) => {
    const relative = name.slice(template.base.length).replaceAll('\\', '/')
    return name.startsWith(template.base) && partOf(relative) !== undefined && numbered.test(relative)
  }
}
