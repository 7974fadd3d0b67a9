// The manifest of an export in parts: what it lists, its JSON text, and reading one back.
import { ExportError } from '../core/errors.js'
import type { CompressionName, FormatInfo, Location, Manifest, PartInfo } from '../core/types.js'

/** JSON of a manifest or a job's return value: a bigint key as its decimal text. */
export const jsonText = (value: unknown, space?: number): string => JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? String(v) : v), space)

/** What a manifest says of its parts' format and compression (what claiming its name compares too). */
export function partsKind(format: FormatInfo, compression: { name: CompressionName } | undefined): Pick<Manifest, 'format' | 'contentType' | 'compression'> {
  return { format: format.extension ?? 'bin', contentType: format.contentType ?? 'application/octet-stream', compression: compression?.name ?? 'none' }
}

/** A manifest of these parts, in order: totals over them, written now. */
export function buildManifest<L extends object>(
  name: string,
  info: Pick<Manifest, 'format' | 'contentType' | 'compression' | 'columns'>,
  parts: Array<PartInfo<L>>,
): Manifest<L> {
  return {
    version: 1,
    name,
    createdAt: new Date().toISOString(),
    format: info.format,
    contentType: info.contentType,
    compression: info.compression,
    ...(info.columns ? { columns: info.columns } : {}),
    rows: parts.reduce((sum, part) => sum + part.rows, 0),
    bytes: parts.reduce((sum, part) => sum + part.bytes, 0),
    parts,
  }
}

/** The manifest as stored: indented JSON and a line feed. */
export const manifestBytes = (manifest: Manifest<object>): Buffer => Buffer.from(jsonText(manifest, 2) + '\n')

/** A stored manifest read back; ERR_SINK naming it when it is not one of ours. */
export function parseManifest<L extends object = Location>(bytes: Buffer, where: string): Manifest<L> {
  let manifest: Partial<Manifest<L>> | undefined
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as Partial<Manifest<L>>
  } catch {
    // not JSON: refused below
  }
  const parts = manifest?.parts
  const wellFormed =
    manifest?.version === 1 &&
    typeof manifest.format === 'string' &&
    (manifest.name === undefined || typeof manifest.name === 'string') &&
    Array.isArray(parts) &&
    parts.every((part: Partial<PartInfo<L>> | null) => typeof part?.name === 'string')
  if (!wellFormed) throw new ExportError('ERR_SINK', 'sink', `${where} is not a manifest of an export in parts: it is left as it is`)
  return manifest as Manifest<L>
}
