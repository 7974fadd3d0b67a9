// Names of the files or objects of an export in parts, derived from the sink's own path or key.
// Parts carry the run that wrote them, so that no other run writes or removes them before its
// commit; the manifest keeps the whole base name, so that two exports share one only when they
// have the same destination.
import { randomBytes } from 'node:crypto'

/** A new run's id: 8 hex digits, in the names of the parts it writes. */
export const newRunId = (): string => randomBytes(4).toString('hex')

// Compression suffixes, and the format's extension before them, are what a part number goes before.
const COMPRESSED = /\.(gz|zst|br)$/
const EXTENSION = /\.[A-Za-z0-9]{1,8}$/

interface NameParts {
  /** The folder or key prefix, with its separator (`out/`), or ''. */
  dir: string
  /** The name without its format and compression extensions (`report.2026-01`). */
  stem: string
  /** The format and compression extensions (`.csv.gz`), or ''. */
  extensions: string
}

/** `out/report.2026-01.csv.gz` -> `{ dir: 'out/', stem: 'report.2026-01', extensions: '.csv.gz' }`. */
export function nameParts(path: string): NameParts {
  const start = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1
  const name = path.slice(start)
  let stem = name
  const compressed = COMPRESSED.exec(stem)
  if (compressed) stem = stem.slice(0, compressed.index)
  const format = EXTENSION.exec(stem)
  if (format && format.index > 0)
    stem = stem.slice(0, format.index) // a leading dot (`.hidden`) is part of the name
  else if (compressed && stem.length === 0) stem = name // `.gz` alone: a name, not an extension
  return { dir: path.slice(0, start), stem, extensions: name.slice(stem.length) }
}

/** Part `n` (from 1) of run `run`: `out/report.csv.gz` -> `out/report-1a2b3c4d-00001.csv.gz` (five digits, more past 99,999). */
export function partPath(path: string, run: string, n: number): string {
  const { dir, stem, extensions } = nameParts(path)
  return `${dir}${stem}-${run}-${String(n).padStart(5, '0')}${extensions}`
}

/** The manifest of the export to `path`: `out/report.2026-01.csv.gz` -> `out/report.2026-01.manifest.json`. */
export function manifestPath(path: string): string {
  const { dir, stem } = nameParts(path)
  return `${dir}${stem}.manifest.json`
}

/** The file name of a path or key: its last segment. */
export function baseName(path: string): string {
  return path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1)
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/**
 * The path of `name` (a file name a manifest lists) beside the export to `path`, if it is named
 * exactly as a part of that export is (`report-1a2b3c4d-00001.csv.gz` beside `report.csv.gz`; a
 * sharded flow's `report-1a2b3c4d-shard-0001-5e6f7a8b-9c0d1e2f-00001.csv.gz`; the run-less names of
 * earlier versions); `undefined` otherwise. A manifest only ever makes us remove parts of its own
 * export, whatever its `location` says. `legacy`: a manifest of an earlier version (it names no
 * export), whose parts have no run id.
 */
export function partBeside(path: string, name: string, legacy = false): string | undefined {
  const { dir, stem, extensions } = nameParts(path)
  const runs = legacy ? '(?:shard-\\d{4,}-)?' : '[0-9a-f]{8}-(?:shard-\\d{4,}(?:-[0-9a-f]{8})+-)?'
  const part = new RegExp(`^${escape(stem)}-${runs}\\d{5,}${escape(extensions)}$`)
  return part.test(name) ? `${dir}${name}` : undefined
}
