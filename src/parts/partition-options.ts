// The `partitionBy` option of exportStream: its forms, checked against the sink's path or key
// (the name template), and what the partition writer runs with (docs/partitions.md).
import { invalidOption } from '../core/errors.js'
import { checkBoolean, checkFunction, checkObject, checkPositiveInteger, checkString, optionNames } from '../core/options.js'
import type { Row } from '../core/types.js'
import { checkCheckpointOption, type PartitionCheckpointOptions } from './partition-checkpoint.js'
import { hiveTemplate, manifestNameOf, parseTemplate, type PartitionTemplate } from './partition-names.js'

/** The values of a row's partition, by the placeholders of the name template. */
export type PartitionFunction = (row: Row) => Record<string, unknown>

/** `exportStream({ partitionBy })`: columns, a function of the row, or these options. */
export type PartitionBy = string | string[] | PartitionFunction | PartitionOptions

export interface PartitionOptions {
  /** The partition columns (each a placeholder of the sink's path: `exports/{customer}.csv.gz`), or a function of the row giving the placeholders' values. */
  by: string | string[] | PartitionFunction
  /** Hive-style names from columns: the sink's `out/events.parquet` becomes `out/customer=acme/events-<run>-00001.parquet`. */
  hive?: boolean
  /**
   * Partitions written at once. A row of a new partition past them finishes the partition written
   * least recently; a row of a finished partition fails the export (order the rows by the
   * partition columns). Memory: up to this many open parts (an S3 part buffers up to its part
   * size). Default 16.
   */
  maxOpen?: number
  /**
   * Save a checkpoint as partitions land, and continue from one: for a job that resumes after a
   * crash without writing its finished partitions again (a keyset source, rows ordered by the
   * partition columns; see docs/partitions.md#resuming). The job processor does this itself.
   */
  checkpoint?: PartitionCheckpointOptions
}

const PARTITION_OPTION_NAMES = optionNames<PartitionOptions>({ by: true, hive: true, maxOpen: true, checkpoint: true })
export interface PartitionSettings {
  template: PartitionTemplate
  values: PartitionFunction
  /** The partition columns, when partitioned by columns (not by a function). */
  columns: string[] | undefined
  maxOpen: number
  /** The manifest's path, as a name whose `manifestPath` it is. */
  manifestName: string
  checkpoint: ReturnType<typeof checkCheckpointOption> | undefined
}

/** Checks `partitionBy` against the sink's path or key (the name template). */
export function checkPartitionBy(option: unknown, path: string): PartitionSettings {
  const {
    by,
    hive = false,
    maxOpen = 16,
    checkpoint,
  } = typeof option === 'object' && option !== null && !Array.isArray(option) ? (checked(option) as PartitionOptions) : { by: option as PartitionOptions['by'] }
  checkPositiveInteger('partitionBy.maxOpen', maxOpen)
  checkBoolean('partitionBy.hive', hive)
  let values: PartitionFunction
  let columns: string[] | undefined
  if (typeof by === 'function') values = by
  else {
    columns =
      typeof by === 'string'
        ? [by]
        : Array.isArray(by)
          ? by
          : invalidOption('partitionBy', 'a column, columns, a function of the row or { by, hive, maxOpen }', by)
    if (columns.length === 0) invalidOption('partitionBy', 'at least one column', by)
    columns.forEach((column, i) => checkString(`partitionBy[${i}]`, column))
    const picked = columns
    values = (row) => Object.fromEntries(picked.map((column) => [column, row[column]]))
  }
  if (hive && columns === undefined) invalidOption('partitionBy.hive', 'used with partition columns', hive)
  const template = parseTemplate(hive ? hiveTemplate(path, columns!) : path)
  if (columns) {
    const missing = columns.find((column) => !template.names.includes(column))
    if (missing !== undefined)
      invalidOption('partitionBy', `columns the sink's path names as {placeholders} (${JSON.stringify(path)} has no {${missing}})`, columns)
    const extra = template.names.find((name) => !columns.includes(name))
    if (extra !== undefined)
      invalidOption('partitionBy', `the columns of every {placeholder} in the sink's path (${JSON.stringify(path)} has {${extra}})`, columns)
  }
  return {
    template,
    values,
    columns,
    maxOpen,
    manifestName: manifestNameOf(template),
    checkpoint: checkpoint === undefined ? undefined : checkCheckpointOption(checkpoint),
  }
}

function checked(option: object): object {
  checkObject('partitionBy', option, PARTITION_OPTION_NAMES)
  if (typeof (option as PartitionOptions).by === 'function') checkFunction('partitionBy.by', (option as PartitionOptions).by)
  return option
}
