// Names of a partitioned export: a template with placeholders (`exports/{customer}/{yyyy}-{mm}.csv.gz`)
// filled with each partition's values, encoded so that no value can leave the export's folder or
// make two partitions share a name, and the manifest's name for the whole export.
import { createHash } from 'node:crypto'
import { ExportError, invalidOption } from '../core/errors.js'
import { nameParts } from './names.js'

const PLACEHOLDER = /\{([^{}/\\]+)\}/g
/** Bytes an encoded value may take in a name before it is cut and given a hash of the whole. */
const MAX_ENCODED = 100

/** A template split at its first placeholder: the folder every partition goes under, and the rest. */
export interface PartitionTemplate {
  /** The folder or key prefix before the first placeholder's segment (`exports/`), with its separator, or ''. */
  readonly base: string
  /** The rest, with placeholders: `{customer}/{yyyy}-{mm}.csv.gz`. */
  readonly relative: string
  /** The placeholders, in order of first appearance. */
  readonly names: string[]
}

/** Reads a sink's path or key as a template; ERR_INVALID_OPTION when it has no placeholder. */
export function parseTemplate(path: string): PartitionTemplate {
  const names = [...new Set([...path.matchAll(PLACEHOLDER)].map((m) => m[1]!))]
  if (names.length === 0) {
    invalidOption('partitionBy', 'used with a sink path or key that names the partition values, e.g. `exports/{customer}.csv.gz`', path)
  }
  const first = path.indexOf('{')
  const cut = Math.max(path.lastIndexOf('/', first), path.lastIndexOf('\\', first)) + 1
  return { base: path.slice(0, cut), relative: path.slice(cut), names }
}

/**
 * The name the manifest is named after (see `manifestPath`): the folder before the first
 * placeholder and the file name's static text (`exports/{customer}-statements.csv` ->
 * `exports/statements.csv`), or `partitions` when it has none.
 */
export function manifestNameOf(template: PartitionTemplate): string {
  const { stem, extensions } = nameParts(template.relative.slice(template.relative.search(/[^/\\]*$/)))
  return `${template.base}${stem.replace(/\{[^{}]*\}/g, '').replace(/^[-_.]+|[-_.]+$/g, '') || 'partitions'}${extensions}`
}

/** Hive style: `out/events.parquet` partitioned by customer -> `out/customer={customer}/events.parquet`. */
export function hiveTemplate(path: string, columns: string[]): string {
  const { dir } = nameParts(path)
  const name = path.slice(dir.length)
  return `${dir}${columns.map((column) => `${encodeValue(column)}={${column}}/`).join('')}${name}`
}

/**
 * A partition value as it appears in a name: letters, digits, `_` and `-` as they are, any other
 * character percent-encoded as UTF-8 (`/` is `%2F`, `.` is `%2E`, `~` is `%7E`: no value makes a
 * `..`, a hidden file or a format extension of its own); NULL is `~null`, the empty string `~empty`; a value longer than 100 encoded bytes is cut and ends in
 * `~` and 8 hex digits of its SHA-256. Reversible (decodeURIComponent) but for the cut ones, whose
 * raw value the manifest holds.
 */
export function encodeValue(value: unknown): string {
  if (value === null || value === undefined) return '~null'
  const text = valueText(value)
  if (text === '') return '~empty'
  let encoded = ''
  for (const char of text)
    encoded += /^[A-Za-z0-9_-]$/.test(char) ? char : [...Buffer.from(char)].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('')
  if (encoded.length > MAX_ENCODED)
    encoded = `${encoded.slice(0, MAX_ENCODED - 9).replace(/%[0-9A-F]?$/, '')}~${createHash('sha256').update(text).digest('hex').slice(0, 8)}`
  return encoded
}

/** A partition value's text (what tells partitions apart); ERR_TRANSFORM for a value with none to go by. */
export function valueText(value: unknown): string {
  if (typeof value === 'string') return value
  if (typeof value === 'number' && !Number.isFinite(value))
    throw new ExportError('ERR_TRANSFORM', 'transform', `A partition value is ${value}: the manifest (JSON) cannot hold it (map it to a string or null)`)
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value)
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new ExportError('ERR_TRANSFORM', 'transform', 'A partition value is an invalid Date')
    return value.toISOString()
  }
  throw new ExportError(
    'ERR_TRANSFORM',
    'transform',
    `A partition value must be a string, number, bigint, boolean, Date or null; got ${Object.prototype.toString.call(value)}`,
  )
}

/** The path of a partition: the template with each placeholder replaced by its encoded value. */
export function expandTemplate(template: PartitionTemplate, values: Record<string, unknown>): string {
  return template.base + template.relative.replace(PLACEHOLDER, (_m, name: string) => encodeValue(values[name]))
}

/**
 * Whether `name` (a path relative to the template's base, as a manifest lists it) is named as a
 * part of this partitioned export is: the template with any value in each placeholder, a case
 * suffix, a run and a part number. A manifest only ever makes us remove parts of its own export.
 */
export function partitionPartOf(template: PartitionTemplate): (name: string) => string | undefined {
  const { dir, stem, extensions } = nameParts(template.relative)
  const pattern = (text: string) =>
    text
      .split(PLACEHOLDER)
      .map((piece, i) => (i % 2 ? '[^/\\\\]+' : escape(piece)))
      .join('')
  const part = new RegExp(`^${pattern(dir)}${pattern(stem)}(?:~\\d+)?-[0-9a-f]{8}-\\d{5,}${escape(extensions)}$`)
  return (name) => (part.test(name) && !name.split(/[/\\]/).includes('..') ? `${template.base}${name}` : undefined)
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
