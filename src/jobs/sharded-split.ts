// The split output of a sharded flow: each shard writes its range as complete parts (files of the
// part model, `statements-1a2b3c4d-shard-0003-5e6f7a8b-9c0d1e2f-00001.csv.gz`...) with its own manifest,
// all under the flow's run prefix; the parent lists every shard's parts, in key order, in one
// manifest (`statements.manifest.json`): the commit point, by the part model's commit rule.
import { removeAll } from '../core/remove-all.js'
import { commitManifest, type CommitOutcome } from '../parts/commit.js'
import { buildManifest, manifestBytes } from '../parts/manifest.js'
import { baseName, nameParts } from '../parts/names.js'
import { partitionPartOf, parseTemplate } from '../parts/partition-names.js'
import type { S3Location } from '../sinks/s3/client.js'
import type { Manifest, PartInfo, PartStore } from '../core/types.js'

/** What a shard of a split flow returns to the parent: its parts, and what its manifest said of them. */
export interface SplitShardResult {
  index: number
  rows: number
  bytes: number
  files: Array<PartInfo<S3Location>>
  manifest: Pick<Manifest, 'format' | 'contentType' | 'compression' | 'columns'>
}

/** The key prefix of everything a flow's shards write: `exports/42.csv.gz`, run `1a2b3c4d` -> `exports/42-1a2b3c4d-`. */
export function splitShardPrefix(key: string, run: string): string {
  const { dir, stem } = nameParts(key)
  return `${dir}${stem}-${run}-`
}

/**
 * The object that says a split flow still goes on (`exports/42-1a2b3c4d-flow`, empty): put before
 * the shards are added, removed first when the flow fails (before what the flow wrote is listed
 * and removed). A shard that finishes and finds it gone removes what it wrote: either it looked
 * before the flow's listing, which then found its parts, or after, and removes them itself.
 */
export const flowMarkerKey = (prefix: string): string => `${prefix}flow`

/** What a split flow is, as the parent's state and each shard's assignment say. */
export interface SplitFlow {
  /** The export's key; a partitioned flow's: its key template (`statements/{customer}.csv.gz`). */
  key: string
  /** The run prefix (see splitShardPrefix; a partitioned flow's: `statements/1a2b3c4d-`). */
  stashPrefix: string
  /** Each shard writes a partitioned export of its range, the parent one manifest of them all. */
  partitioned?: boolean
}

/**
 * A partitioned flow's run prefix: the template's folder and the run (`statements/1a2b3c4d-`). Its
 * marker and its shards' manifests are under it; their parts are in the partitions' own folders.
 */
export const partitionedFlowPrefix = (template: string, run: string): string => `${parseTemplate(template).base}${run}-`

/**
 * The key template an attempt of a partitioned flow's shard writes its partitions under:
 * `statements/{customer}.csv.gz` -> `statements/{customer}-1a2b3c4d-shard-0003-5e6f7a8b.csv.gz`.
 */
export function partitionedShardTemplate(flow: SplitFlow, index: number, attempt: string): string {
  const { dir, stem, extensions } = nameParts(flow.key)
  const run = flow.stashPrefix.slice(parseTemplate(flow.key).base.length, -1)
  return `${dir}${stem}-${run}-shard-${String(index + 1).padStart(4, '0')}-${attempt}${extensions}`
}

/** Every object a split flow's shards wrote (a partitioned flow's parts are listed from the template's folder). */
export async function flowObjects(list: (prefix: string) => Promise<string[]>, flow: SplitFlow): Promise<string[]> {
  if (!flow.partitioned) return list(flow.stashPrefix)
  const { base } = parseTemplate(flow.key)
  const run = flow.stashPrefix.slice(base.length, -1)
  const part = new RegExp(`-${run}-shard-\\d{4,}-[0-9a-f]{8}(?:~\\d+)?-[0-9a-f]{8}-\\d{5,}[^/\\\\]*$`)
  // A shard's manifest is named after the file name's static text (`statements/data-<run>-shard-…`), in the folder.
  const manifest = new RegExp(`^[^/\\\\]*-${run}-shard-\\d{4,}-[0-9a-f]{8}\\.manifest\\.json$`)
  return (await list(base)).filter((key) => key.startsWith(flow.stashPrefix) || part.test(key) || manifest.test(key.slice(base.length)))
}

/**
 * The key an attempt of shard `index` names its parts after: `exports/42-1a2b3c4d-shard-0003-5e6f7a8b.csv.gz`.
 * Each attempt has one of its own, so that an attempt BullMQ took for stalled, finishing after its
 * successor, never commits over it (nor removes the parts the parent will list).
 */
export function splitShardKey(prefix: string, key: string, index: number, attempt: string): string {
  return `${prefix}shard-${String(index + 1).padStart(4, '0')}-${attempt}${nameParts(key).extensions}`
}

/**
 * The parent's commit: one manifest of every shard's parts in key order (a shard of no rows adds
 * none, unless no shard has any: then the first shard's empty part stands for the export),
 * written beside them by the commit rule (the previous export's unlisted parts removed after
 * it); then what the flow wrote and the manifest does not list (the shards' own manifests, empty
 * parts, a stalled or killed attempt's parts) is removed. Once the manifest has landed nothing
 * fails the commit: what cannot be removed is named in `leftBehind`. Resolves with the commit's
 * outcome (see commitManifest).
 */
export async function assembleSplitShards(
  store: PartStore<S3Location>,
  flow: SplitFlow,
  results: SplitShardResult[],
): Promise<CommitOutcome<S3Location> & { manifest: Manifest<S3Location> }> {
  const ordered = [...results].sort((a, b) => a.index - b.index)
  const withRows = ordered.flatMap((result) => result.files.filter((file) => file.rows > 0))
  // (A partitioned export of no rows has no part: its manifest lists none.)
  const parts = withRows.length > 0 || flow.partitioned ? withRows : ordered[0]!.files.slice(0, 1)
  const template = flow.partitioned ? parseTemplate(flow.key) : undefined
  const manifest: Manifest<S3Location> = template
    ? { ...buildManifest(template.relative, ordered[0]!.manifest, parts), partitionBy: template.names }
    : buildManifest(baseName(store.name), ordered[0]!.manifest, parts)
  const outcome = await commitManifest(store, manifestBytes(manifest), manifest, undefined, template && partitionPartOf(template))
  if (outcome.landed !== true) return { ...outcome, manifest }
  const listed = new Set(parts.map((part) => part.location.key))
  const unlisted = await flowObjects((prefix) => store.list(prefix), flow).then(
    (keys) => keys.filter((key) => !listed.has(key)),
    () => undefined,
  )
  const swept = unlisted === undefined ? [`${flow.stashPrefix}*`] : await removeAll(unlisted, (key) => store.remove(key))
  return { ...outcome, manifest, leftBehind: [...outcome.leftBehind, ...swept] }
}
