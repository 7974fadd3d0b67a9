// The Parquet format: its options, checked before anything runs, and `parquet()`.
import { availableParallelism } from 'node:os'
import { invalidOption } from '../../core/errors.js'
import { loadOptional } from '../../core/optional.js'
import { checkNonNegativeInteger, checkObject, checkOneOf, checkPositiveInteger, optionNames } from '../../core/options.js'
import type { ColumnType, Formatter } from '../../core/types.js'
import type { ParquetCodec } from './format.js'
import type { ZstdCodec } from './encoder.js'
import { ParquetFormat, type NormalizedParquetOptions } from './format.js'

export type { ParquetCodec } from './format.js'

export interface ParquetOptions {
  /** Column types. Default: from the source (Postgres field types), else inferred from the first row group. */
  schema?: ColumnType[]
  /** Rows per row group at most; one row group is held in memory at a time. Default 100,000. */
  rowGroupSize?: number
  /**
   * A row group also ends once its values reach about this many bytes (strings and bytes by their
   * length, other values as 8), so memory stays bounded whatever the row width (DuckDB's
   * ROW_GROUP_SIZE_BYTES idea). Default 1 MB (1,000,000): chosen by measurement, docs/parquet.md.
   */
  rowGroupBytes?: number
  /** Default `SNAPPY`. `ZSTD` needs the `zstd-codec` package. */
  codec?: ParquetCodec
  /** Columns to write, in order (a subset of the row keys). Default: the schema's, or the first row's keys. */
  columns?: string[]
  /**
   * Worker threads that encode row groups in parallel, the groups written in order, at most two a
   * thread in flight. Default: one core fewer than the machine has (`os.availableParallelism()`),
   * at least 1 and at most 4: the stream's own thread gathers and converts rows meanwhile. `0`
   * encodes on the stream's own thread. A file of one row group is encoded in-thread whatever this
   * says (no thread to start).
   */
  workers?: number
}

const TYPES = ['BOOLEAN', 'INT32', 'INT64', 'DOUBLE', 'STRING', 'JSON', 'BYTE_ARRAY', 'TIMESTAMP', 'DATE', 'DECIMAL'] as const
export type { NormalizedParquetOptions } from './format.js'

const PARQUET_OPTION_NAMES = optionNames<ParquetOptions>({ schema: true, rowGroupSize: true, rowGroupBytes: true, codec: true, columns: true, workers: true })

/**
 * Checks Parquet options and applies the defaults, without building a stream: ERR_INVALID_OPTION
 * names the first bad option (down to `schema[2].precision`). The result is frozen.
 */
export function normalizeParquetOptions(options: ParquetOptions = {}): NormalizedParquetOptions {
  checkObject('options', options, PARQUET_OPTION_NAMES)
  const { schema, rowGroupSize = 100_000, rowGroupBytes = DEFAULT_ROW_GROUP_BYTES, codec = 'SNAPPY', columns } = options
  const { workers = Math.max(1, Math.min(4, availableParallelism() - 1)) } = options
  checkNonNegativeInteger('workers', workers)
  if (workers > MAX_WORKERS) invalidOption('workers', `at most ${MAX_WORKERS} threads`, workers)
  checkPositiveInteger('rowGroupSize', rowGroupSize)
  checkPositiveInteger('rowGroupBytes', rowGroupBytes)
  checkOneOf('codec', codec, ['SNAPPY', 'ZSTD', 'GZIP', 'UNCOMPRESSED'] as const)
  if (columns !== undefined && !(Array.isArray(columns) && columns.length > 0 && columns.every((n) => typeof n === 'string' && n !== ''))) {
    invalidOption('columns', 'a non-empty array of column names', columns)
  }
  if (schema !== undefined) {
    if (!Array.isArray(schema) || schema.length === 0) invalidOption('schema', 'a non-empty array of { name, type }', schema)
    schema.forEach((c, i) => {
      if (typeof c?.name !== 'string' || c.name === '') invalidOption(`schema[${i}].name`, 'a non-empty string', c?.name)
      checkOneOf(`schema[${i}].type`, c.type, TYPES)
      if (c.type === 'DECIMAL') {
        if (!Number.isInteger(c.precision) || c.precision! < 1 || c.precision! > 76)
          invalidOption(`schema[${i}].precision`, 'an integer from 1 to 76', c.precision)
        if (!Number.isInteger(c.scale ?? 0) || (c.scale ?? 0) < 0 || (c.scale ?? 0) > c.precision!)
          invalidOption(`schema[${i}].scale`, 'an integer from 0 to precision', c.scale)
      }
    })
  }
  return Object.freeze({
    schema: schema && Object.freeze(schema.map((c) => Object.freeze({ ...c }))),
    rowGroupSize,
    rowGroupBytes,
    codec,
    columns: columns && Object.freeze([...columns]),
    workers,
  })
}

/** More threads than any machine this runs on has cores, each with its own heap: a mistake. */
const MAX_WORKERS = 64

/** Bytes of values per row group by default (see `rowGroupBytes`). */
const DEFAULT_ROW_GROUP_BYTES = 1_000_000

/**
 * Parquet format stage (hyparquet-writer): rows are gathered into row groups of `rowGroupSize`
 * rows or `rowGroupBytes` of values, whichever comes first; the groups are encoded on `workers`
 * threads in parallel, and written in order as each is ready, a bounded number in flight.
 * Parquet compresses inside (SNAPPY by default): gzip on top is ERR_INVALID_OPTION.
 */
export function parquet(options: ParquetOptions = {}): Formatter {
  const normalized = normalizeParquetOptions(options)
  const zstdCodec = normalized.codec === 'ZSTD' ? loadOptional<ZstdCodec>('zstd-codec', 'zstd-codec') : undefined
  return new ParquetFormat(normalized, zstdCodec)
}
