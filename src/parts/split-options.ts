// The `split` option: where an export in parts cuts its parts.
import { invalidOption } from '../core/errors.js'
import { checkObject, checkPositiveInteger, optionNames } from '../core/options.js'

/** Where a split export cuts its parts; a part ends at the first row boundary past either limit. */
export interface SplitOptions {
  /** Rows per part. */
  rows?: number
  /**
   * Bytes per part as stored (compressed when gzip is on). A part ends at the row that reaches
   * this size, estimated from what has been written and compressed so far: it may pass it by one
   * row plus one compression block (256 KiB of input); for Parquet, by the estimate of one row
   * group's size.
   */
  bytes?: number
}

const SPLIT_OPTION_NAMES = optionNames<SplitOptions>({ rows: true, bytes: true })

/** Checks a `split` option: an object with `rows` or `bytes` (positive integers). */
export function checkSplitOptions(split: unknown): SplitOptions {
  checkObject('split', split, SPLIT_OPTION_NAMES)
  const { rows, bytes } = split as SplitOptions
  if (rows === undefined && bytes === undefined) invalidOption('split', 'an object with `rows` or `bytes`', split)
  if (rows !== undefined) checkPositiveInteger('split.rows', rows)
  if (bytes !== undefined) checkPositiveInteger('split.bytes', bytes)
  return { rows, bytes }
}
