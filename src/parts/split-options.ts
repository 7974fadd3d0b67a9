// The `split` option: where an export in parts cuts its parts.
import { invalidOption } from '../core/errors.js'
import { checkObject, checkPositiveInteger, optionNames } from '../core/options.js'
import type { CompressionName, PartStore, Row, SegmentSink } from '../core/types.js'
import type { RowTransform } from '../stages/map-rows.js'
import type { Compression, Format } from './part.js'

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

/** What a SplitWriter (writer.ts) writes, and where. */
export interface SplitWriterOptions<L extends object> {
  /**
   * Files (a split export: complete parts and a manifest), or segments of one object (a resumable
   * upload: the format continues across parts, and the sink commits them).
   */
  target: { files: PartStore<L> } | { segments: SegmentSink<L> }
  /** The first part's format; the next parts get `format.nextPart()` (files) or `nextSegment()` (segments). */
  format: Format
  /** The compression (its name for the manifest, a new stage per part), or none. */
  compression: { name: CompressionName; stage: () => Compression } | undefined
  transforms: RowTransform[]
  /** The source's key of a row (keyset sources), for each part's first and last key. */
  keyOf: ((row: Row) => unknown) | undefined
  /** Column names, when the source knows them. */
  columns: () => string[] | undefined
  limits: SplitOptions
  /**
   * Files only: `false` for the parts of one partition of a partitioned export, whose manifest is
   * the partition writer's: none is claimed or written here, and parts that finished stay until
   * `discardParts()`. Default true.
   */
  commits?: boolean
  /** The run id in the parts' names (a partitioned export's one for all its partitions). Default: a new one. */
  run?: string
}
