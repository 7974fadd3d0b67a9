// Names a customer sees: an export's object key and the file name its download saves under, from
// one template language: `{jobId}`, `{date}` / `{date:yyyy-MM}`, the export's labels (`{tenant}`)
// and a partitioned export's values (`{customer}`). In a key each value is encoded as partition
// values are (nothing escapes the folder); in a file name it keeps its characters (non-ASCII
// travels as RFC 6266 `filename*`), with only what no file system can hold replaced.
import { ExportError, invalidOption } from '../core/errors.js'
import { encodeValue, valueText } from '../parts/partition-names.js'

/** What a name template is filled with. */
export interface NameContext {
  /** The job's id: `{jobId}`. */
  jobId?: string
  /** When the export was asked for (UTC): `{date}` is `yyyy-MM-dd`, `{date:yyyy-MM}` any of yyyy MM dd HH mm ss. */
  date: Date
  /** The export's labels (`{ tenant: 'Café Müller' }`) and, for a partition, its values. */
  values?: Record<string, unknown>
}

const PLACEHOLDER = /\{([^{}:/\\]+)(?::([^{}]*))?\}/g
const DATE_FORMAT = /^(?:yyyy|MM|dd|HH|mm|ss|[-_. T/])+$/
/**
 * Characters a file name does not keep: what no common file system holds (Windows' reserved ones),
 * controls (C0, C1), format characters (bidirectional overrides that make `fdp.exe` read `exe.pdf`,
 * zero-width ones), lone surrogates (no UTF-8 holds them) and line and paragraph separators.
 */
const UNSAFE_IN_FILE_NAME = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}"*/:<>?\\|]/gu
/** Characters a file name keeps of one value; the rest is cut (the log and manifest hold the whole). */
const MAX_VALUE_CHARS = 100
/** UTF-8 bytes of a whole file name (most file systems take 255). */
const MAX_NAME_BYTES = 200
/** Windows' device names, which no file may be called, whatever its extension. */
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)/i

/**
 * An object key from a template: `exports/{tenant}/{date:yyyy-MM}/{jobId}.csv.gz`. Values are
 * encoded as partition values are in keys (letters, digits, `_`, `-` kept; the rest
 * percent-encoded: no value makes a `/` or a `..`). A partitioned export's placeholders stay as
 * they are, to be filled per partition: its columns' (`partitions`), or, for a partitionBy function
 * (`'any'`), every one that is not `{jobId}`, `{date}` or a label. Any other is ERR_INVALID_OPTION.
 */
export function keyFromTemplate(template: string, context: NameContext, partitions?: ReadonlySet<string> | 'any'): string {
  return fill(template, context, encodeValue, 'key', partitions)
}

/**
 * A download file name from a template: `Statements {tenant} {date:yyyy-MM}.csv.gz` ->
 * `Statements Café Müller 2026-12.csv.gz`. Values keep their characters but `/ \ : * ? " < > |`,
 * controls, format characters (bidirectional overrides, zero-width) and line separators, which
 * become `_`; a value is cut at 100 characters, NULL is empty. The name never starts with a dot,
 * ends with a dot or a space, is a Windows device name (`CON.csv` -> `_CON.csv`) or passes 200
 * UTF-8 bytes (its stem is cut, its extensions kept). A placeholder without a value is empty: check
 * the template first (`checkFileNameTemplate`); only a bad `{date:...}` format is refused here.
 */
export function fileNameFromTemplate(template: string, context: NameContext): string {
  let name = fill(template, context, (value) => fileNameValue(value), 'filename', undefined, '')
    .replace(UNSAFE_IN_FILE_NAME, '_')
    .replace(/^[. ]+|[. ]+$/g, '')
  if (name === '') name = 'export'
  if (RESERVED.test(name)) name = `_${name}`
  if (Buffer.byteLength(name) <= MAX_NAME_BYTES) return name
  const extensions = /(\.[^. ]{1,10}){0,2}$/.exec(name)![0]
  let stem = ''
  for (const char of name.slice(0, name.length - extensions.length)) {
    if (Buffer.byteLength(stem + char + extensions) > MAX_NAME_BYTES) break
    stem += char
  }
  return stem.replace(/[. ]+$/, '') + extensions
}

/**
 * Checks a file name template before anything is written: its placeholders are `{jobId}`,
 * `{date...}` with a valid format, a label, or a partition column (`'any'`: a partitionBy function).
 */
export function checkFileNameTemplate(template: string, labels: Record<string, unknown> | undefined, partitions?: ReadonlySet<string> | 'any'): void {
  fill(template, { jobId: 'job', date: new Date(0), values: labels }, () => 'x', 'filename', partitions)
}

function fileNameValue(value: unknown): string {
  if (value === null || value === undefined) return ''
  return [...valueText(value).replace(UNSAFE_IN_FILE_NAME, '_')].slice(0, MAX_VALUE_CHARS).join('')
}

// `unknown`: what an unknown placeholder becomes (a file name's, checked before the export: empty);
// without it, one is refused.
function fill(
  template: string,
  context: NameContext,
  encode: (value: unknown) => string,
  option: string,
  partitions?: ReadonlySet<string> | 'any',
  unknown?: string,
): string {
  if (typeof template !== 'string' || template === '') invalidOption(option, 'a non-empty string', template)
  return template.replace(PLACEHOLDER, (whole, name: string, format: string | undefined) => {
    if (partitions !== undefined && partitions !== 'any' && partitions.has(name)) return whole
    if (name === 'date') return formatDate(context.date, format ?? 'yyyy-MM-dd', option)
    if (format !== undefined) invalidOption(option, `a template whose \`{${name}}\` has no format (only \`{date:...}\` takes one)`, template)
    if (name === 'jobId' && context.jobId !== undefined) return encode(context.jobId)
    if (context.values && Object.hasOwn(context.values, name)) return encode(context.values[name])
    if (partitions === 'any') return whole
    if (unknown !== undefined) return unknown
    throw new ExportError(
      'ERR_INVALID_OPTION',
      'options',
      `The ${option} template ${JSON.stringify(template)} names \`{${name}}\`, which is not {jobId}, {date}, a label${partitions ? ' or a partition column' : ''}`,
    )
  })
}

/** A UTC date in a format of yyyy, MM, dd, HH, mm, ss and separators. */
function formatDate(date: Date, format: string, option: string): string {
  if (!DATE_FORMAT.test(format)) invalidOption(option, 'a date format of yyyy, MM, dd, HH, mm, ss and - _ . T / or space', `{date:${format}}`)
  const two = (n: number) => String(n).padStart(2, '0')
  const fields: Record<string, string> = {
    yyyy: String(date.getUTCFullYear()).padStart(4, '0'),
    MM: two(date.getUTCMonth() + 1),
    dd: two(date.getUTCDate()),
    HH: two(date.getUTCHours()),
    mm: two(date.getUTCMinutes()),
    ss: two(date.getUTCSeconds()),
  }
  return format.replace(/yyyy|MM|dd|HH|mm|ss/g, (token) => fields[token]!)
}
