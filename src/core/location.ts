/**
 * The path, key or blob name a location names (a file's, an S3 object's, an Azure blob's), or
 * `undefined` for a location of a sink of your own that has none of them.
 */
export function locationName(location: object): string | undefined {
  const { path, key, blob } = location as { path?: unknown; key?: unknown; blob?: unknown }
  const name = key ?? path ?? blob
  return typeof name === 'string' ? name : undefined
}

/** A location's path, key or blob name from a folder (`base`, a manifest's), or as it is when outside it. */
export function relativeName(location: object, base: string): string {
  const where = locationName(location) ?? ''
  return where.startsWith(base) ? where.slice(base.length) : where
}

/** The scheme of a URL-like string (`https`, `s3`, ... lower-cased), or `undefined` for a path: what is never taken for a file name. */
export const schemeOf = (target: string): string | undefined => /^([a-z][a-z0-9+.-]*):\/\//i.exec(target)?.[1]?.toLowerCase()
