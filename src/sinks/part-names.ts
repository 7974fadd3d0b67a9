// Names of the files or objects of a split export, derived from the sink's own path or key.

/** The last segment's start and the position of its first dot (its extensions: `.csv.gz`). */
function split(path: string): { stem: string; extensions: string } {
  const start = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1
  const dot = path.indexOf('.', start + 1) // a leading dot (`.hidden`) is part of the name
  return dot < 0 ? { stem: path, extensions: '' } : { stem: path.slice(0, dot), extensions: path.slice(dot) }
}

/** Part `n` (from 1) of `path`: `out/statements.csv.gz` -> `out/statements-00001.csv.gz` (five digits, more past 99,999). */
export function partPath(path: string, n: number): string {
  const { stem, extensions } = split(path)
  return `${stem}-${String(n).padStart(5, '0')}${extensions}`
}

/** The manifest beside the parts of `path`: `out/statements.csv.gz` -> `out/statements.manifest.json`. */
export function manifestPath(path: string): string {
  return `${split(path).stem}.manifest.json`
}

/** The file name of a path or key: its last segment. */
export function baseName(path: string): string {
  return path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1)
}
