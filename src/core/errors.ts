/** Stable error codes. Match on `code`, never on the message. */
export type ExportErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_SOURCE'
  | 'ERR_TRANSFORM'
  | 'ERR_FORMAT'
  | 'ERR_SINK'
  | 'ERR_PROGRESS'
  | 'ERR_ABORTED'
  | 'ERR_STATE'
  /** A conditional write refused: the destination exists (`overwrite: false`) or is not the object `ifMatch` names. */
  | 'ERR_PRECONDITION'
  /** A notifier (webhook, e-mail) failed every attempt; the export itself had succeeded. */
  | 'ERR_NOTIFY'

/**
 * The pipeline stage an error belongs to (`export`: the export as a whole, e.g. an abort; `state`:
 * a store the export keeps its state in (watermarks, the export log); `notify`: a notifier; `gzip`, `zstd`: the compression stage).
 */
export type ExportStage = 'options' | 'export' | 'source' | 'transform' | 'format' | 'gzip' | 'zstd' | 'progress' | 'sink' | 'state' | 'notify'

/** The code of an error that comes from a stage (an abort of the export as a whole is ERR_ABORTED). */
export const STAGE_CODES: Readonly<Record<ExportStage, ExportErrorCode>> = {
  options: 'ERR_INVALID_OPTION',
  export: 'ERR_ABORTED',
  source: 'ERR_SOURCE',
  transform: 'ERR_TRANSFORM',
  format: 'ERR_FORMAT',
  gzip: 'ERR_FORMAT',
  zstd: 'ERR_FORMAT',
  progress: 'ERR_PROGRESS',
  sink: 'ERR_SINK',
  state: 'ERR_STATE',
  notify: 'ERR_NOTIFY',
}

/**
 * The one error type every stage rejects with. `cause` holds the original error
 * (a Postgres error with its SQLSTATE `code`, an S3 service error, `signal.reason`, ...).
 */
export class ExportError extends Error {
  override name = 'ExportError'
  readonly code: ExportErrorCode
  readonly stage: ExportStage
  /**
   * What a failed export in parts could not remove (paths or keys), although it tried: each is
   * this run's own and listed by no manifest. Absent when everything was removed.
   */
  leftBehind?: string[]

  constructor(code: ExportErrorCode, stage: ExportStage, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.stage = stage
  }
}

/** Describes a value for an error message: "`-1` (number)". */
export function describe(value: unknown): string {
  let text: string
  if (typeof value === 'string') text = JSON.stringify(value)
  else if (typeof value === 'bigint') text = `${value}n`
  else if (typeof value === 'function') text = value.name ? `[function ${value.name}]` : '[function]'
  else {
    try {
      text = JSON.stringify(value) ?? String(value)
    } catch {
      text = Object.prototype.toString.call(value)
    }
  }
  if (text.length > 60) text = `${text.slice(0, 57)}...`
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value
  return `\`${text}\` (${type})`
}

/** Throws ERR_INVALID_OPTION: "Expected `name` to be <expected>, got `value` (type)". */
export function invalidOption(name: string, expected: string, value: unknown): never {
  throw new ExportError('ERR_INVALID_OPTION', 'options', `Expected \`${name}\` to be ${expected}, got ${describe(value)}`)
}

/** Wraps any error as an ExportError of the given code and stage; an ExportError passes through. */
export function toExportError(error: unknown, code: ExportErrorCode, stage: ExportStage): ExportError {
  if (error instanceof ExportError) return error
  const message = error instanceof Error ? error.message : String(error)
  return new ExportError(code, stage, `${stage} failed: ${message}`, { cause: error })
}
