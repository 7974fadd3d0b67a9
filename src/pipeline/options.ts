// The options and the result of exportStream(): the contract between the pipeline and its callers.
import type { Readable, Transform, Writable } from 'node:stream'
import type { ObjectChecksum } from '../core/checksum.js'
import type { FormatInfo, Location, Manifest, PartInfo, SinkInfo, SourceExtras } from '../core/types.js'
import type { PartitionBy } from '../parts/partition-options.js'
import type { SplitOptions } from '../parts/split-options.js'
import type { RowIterable } from '../sources/iterable.js'
import type { GzipOptions } from '../stages/gzip.js'
import type { CompressionOption } from './compression.js'
import type { RowTransform } from '../stages/map-rows.js'
import type { Progress } from '../stages/progress.js'
import type { ExportLogger } from '../telemetry/logger.js'

export interface ExportOptions<L extends object = Location> {
  /** Rows: an object-mode Readable (any source of this library) or an (async) iterable of row objects. */
  source: (Readable & SourceExtras) | RowIterable
  /**
   * Row function(s) applied between source and format: `(row, index) => row | undefined` (or a
   * promise of it); `undefined` drops the row. An array runs in order. A throw: ERR_TRANSFORM.
   */
  transform?: RowTransform | RowTransform[]
  /** Format stage: `csv()`, `jsonl()`, `jsonArray()`, `parquet()`, or any Transform from rows to bytes (expose `rows` for counts). */
  format?: Transform & FormatInfo
  /**
   * `true` for gzip level 6, `{ level, threads }`, or a ready compression Transform. Default off.
   * Unless `threads` is given, compression uses every core for a source of formatted bytes
   * (COPY), and leaves one core to row encoding otherwise.
   */
  gzip?: boolean | GzipOptions | Transform
  /**
   * The output's compression by name: `'gzip'` (as `gzip: true`), `'zstd'` (Zstandard level 3,
   * a `.zst` file; Node >= 22.15), or either with options: `{ type: 'zstd', level: 9 }`. Default
   * off. Set this or `gzip`, not both.
   */
  compression?: CompressionOption
  /** Last stage: `fileSink()`, `s3Sink()`, or any Writable (an HTTP response too). */
  sink: Writable & SinkInfo<L>
  /** Progress callback (see `Progress`): every `progressIntervalMs` and once at the end. */
  onProgress?: (progress: Progress) => void | Promise<unknown>
  /** Default 1000. */
  progressIntervalMs?: number
  /** Expected row count for percent/ETA, if the caller knows it (otherwise asked of the source). */
  totalRows?: number
  /** Aborting stops every stage, cleans up and rejects with ERR_ABORTED (`cause`: `signal.reason`). */
  signal?: AbortSignal
  /**
   * Write the export as parts, each a complete file or object (`statements-1a2b3c4d-00001.csv.gz`...), and a
   * manifest beside them (`statements.manifest.json`), written last as the commit point. Needs a
   * sink that names parts (`fileSink`, `s3Sink`) and a format of this library. See docs/parts.md.
   */
  split?: SplitOptions
  /**
   * One file or object per partition, in one pass, committed together: the partition columns
   * (`'customer'`, `['customer', 'region']`), a function of the row giving the values of the
   * sink's path placeholders (`exports/{customer}/{yyyy}-{mm}.csv.gz`), or `{ by, hive, maxOpen }`.
   * Each partition is complete alone (cut further by `split`); one manifest, written last, lists
   * every part with its partition's values. See docs/partitions.md.
   */
  partitionBy?: PartitionBy
  /**
   * At most this many rows a second, on average from the first row: the source is read no faster
   * (its database sends less; nothing buffers up). See docs/operations.md.
   */
  maxRowsPerSecond?: number
  /** At most this many bytes of output (before compression) a second, on average from the first row; the source is held as for `maxRowsPerSecond`. */
  maxBytesPerSecond?: number
  /**
   * A pino-style logger (`info(fields, message)`, `error`, and `warn`/`debug` if it has them): the
   * export's start, parts, commit, cleanup and failure as structured lines. See docs/operations.md.
   */
  logger?: ExportLogger
}

export interface ExportResult<L extends object = Location> {
  rows: number
  /** Bytes the sink received (compressed when compression is on). */
  bytes: number
  /** Bytes before compression. */
  uncompressedBytes: number
  durationMs: number
  /** Where the export landed (a split export: its manifest); `undefined` for a plain Writable sink. */
  location: L | undefined
  /**
   * The sink asked this run to end early (a resumable upload told to `pause()`, e.g. by the Lambda
   * handler before its deadline): `rows` and `bytes` are in its landed parts and its checkpoint;
   * nothing is committed, and another run continues from the checkpoint.
   */
  paused?: true
  /**
   * The full checksum of the object or file (CRC64NVME by default; `verifiedByStore` when S3 checked
   * it at the commit point). A split or partitioned export has one per part instead. See docs/integrity.md.
   */
  checksum?: ObjectChecksum
  /**
   * A partitioned export: its partitions in the order their first rows came, each with its values
   * (raw), rows, bytes and parts.
   */
  partitions?: Array<{ values: Record<string, unknown>; rows: number; bytes: number; parts: Array<PartInfo<L>> }>
  /** A split export's parts, in order. */
  parts?: Array<PartInfo<L>>
  /** A split export's manifest, as written. */
  manifest?: Manifest<L>
  /**
   * A split export that replaced an earlier one: the earlier parts (paths or keys) that could not
   * be removed after the commit. The export has succeeded; these are clutter to remove.
   */
  leftBehind?: string[]
  /**
   * Keyset sources (`postgresKeysetSource`, `mongoSource({ keyset: true })`): the key of the last
   * row of this export, known to be in the destination (it is read at the commit point). Pass it as
   * `after` to export only what came next. A failed export leaves nothing behind, so it has none:
   * start again from the same `after`.
   */
  checkpoint?: unknown
  /**
   * Incremental sources (`postgresIncrementalSource`): where the next run starts. Store it once the
   * export has succeeded (`incrementalExport` does) and pass it as the next run's `after`.
   */
  watermark?: unknown
}
