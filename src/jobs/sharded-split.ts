// The split output of a sharded flow: each shard writes its range as complete parts (files of the
// part model, `statements-shard-0003-00001.csv.gz`...) with its own manifest; the parent lists
// every shard's parts, in key order, in one manifest (`statements.manifest.json`): the commit point.
import { loadS3, send, type S3ClientLike } from '../sinks/s3-multipart.js'
import { removeStash } from '../sinks/s3-shard.js'
import type { S3Location } from '../sinks/s3.js'
import { manifestPath } from '../sinks/part-names.js'
import type { Manifest, PartInfo } from '../types.js'

/** What a shard of a split flow returns to the parent: its parts, and what its manifest said of them. */
export interface SplitShardResult {
  index: number
  rows: number
  bytes: number
  files: Array<PartInfo<S3Location>>
  manifest: Pick<Manifest, 'format' | 'contentType' | 'compression' | 'columns'>
}

/** The key prefix of every shard's parts and manifests: `exports/42.csv.gz` -> `exports/42-shard-`. */
export function splitShardPrefix(key: string): string {
  return `${manifestPath(key).slice(0, -'.manifest.json'.length)}-shard-`
}

/** The key shard `index` names its parts after: `exports/42.csv.gz` -> `exports/42-shard-0003.csv.gz`. */
export function splitShardKey(key: string, index: number): string {
  const stem = manifestPath(key).slice(0, -'.manifest.json'.length)
  return `${stem}-shard-${String(index + 1).padStart(4, '0')}${key.slice(stem.length)}`
}

/** JSON of a manifest or a job's return value: a bigint key as its decimal text. */
export const jsonText = (value: unknown, space?: number): string => JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? String(v) : v), space)

/**
 * The parent's commit: one manifest of every shard's parts in key order (a shard of no rows adds
 * none, unless no shard has any: then the first shard's empty part stands for the export), written
 * beside them; then what the shards wrote and the manifest does not list (their own manifests,
 * empty parts, a killed attempt's leftovers) is removed.
 */
export async function assembleSplitShards(
  client: S3ClientLike,
  bucket: string,
  key: string,
  results: SplitShardResult[],
): Promise<{ manifest: Manifest<S3Location>; location: S3Location }> {
  const ordered = [...results].sort((a, b) => a.index - b.index)
  const withRows = ordered.flatMap((result) => result.files.filter((file) => file.rows > 0))
  const parts = withRows.length > 0 ? withRows : ordered[0]!.files.slice(0, 1)
  const manifest: Manifest<S3Location> = {
    version: 1,
    createdAt: new Date().toISOString(),
    format: ordered[0]!.manifest.format,
    contentType: ordered[0]!.manifest.contentType,
    compression: ordered[0]!.manifest.compression,
    ...(ordered[0]!.manifest.columns ? { columns: ordered[0]!.manifest.columns } : {}),
    rows: parts.reduce((sum, part) => sum + part.rows, 0),
    bytes: parts.reduce((sum, part) => sum + part.bytes, 0),
    parts,
  }
  const s3 = loadS3()
  const location = { bucket, key: manifestPath(key) }
  await send(client, new s3.PutObjectCommand({ Bucket: bucket, Key: location.key, Body: jsonText(manifest, 2) + '\n', ContentType: 'application/json' }))
  const listed = new Set(parts.map((part) => part.location.key))
  await removeStash(client, { bucket, stashPrefix: splitShardPrefix(key) }, (object) => !listed.has(object))
  return { manifest, location }
}
