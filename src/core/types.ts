// The contracts every part of the library shares: sources, formats, stages and sinks import
// them from here, never from the pipeline or from one another (docs/architecture.md).
import type { Transform, Writable } from 'node:stream'
import type { ObjectChecksum } from './checksum.js'

/** A row: what sources emit and formats encode. */
export type Row = Record<string, unknown>

/** The type of a column: given explicitly (a Parquet schema) or described by a source (Postgres fields). */
export interface ColumnType {
  name: string
  /**
   * BOOLEAN, INT32, INT64, DOUBLE; STRING (UTF-8); JSON (text with the JSON logical type);
   * BYTE_ARRAY; TIMESTAMP (INT64 microseconds; `utc: false` for a wall-clock timestamp);
   * DATE (INT32 days); DECIMAL (exact, with `precision` and `scale`).
   */
  type: 'BOOLEAN' | 'INT32' | 'INT64' | 'DOUBLE' | 'STRING' | 'JSON' | 'BYTE_ARRAY' | 'TIMESTAMP' | 'DATE' | 'DECIMAL'
  precision?: number
  scale?: number
  /** TIMESTAMP only: the instant is UTC (timestamptz). Default `true`. */
  utc?: boolean
  /** Nulls allowed. Default `true`; `false` makes a null ERR_FORMAT. */
  nullable?: boolean
  /** STRING only: numbers carried as exact text (Postgres `numeric` without a precision); CSV never formula-escapes them. */
  numeric?: boolean
}

/**
 * Optional extras a source may offer: sources of this library implement them, and any Readable
 * of rows works without them.
 */
export interface SourceExtras {
  /** Row count for progress (e.g. a COUNT query). Runs alongside the export. */
  countRows?(): Promise<number | undefined>
  /** Column types, once the source knows them (Postgres: after the first row description). */
  columnTypes?(): ColumnType[] | undefined
  /**
   * Set by a source that reads ahead of its consumer on its own (the sharded sources: each shard
   * reads into memory and a spill file while it waits its turn): holding it back does not make it
   * read less, so a rate (`maxRowsPerSecond`) is refused for it.
   */
  readonly readsAhead?: boolean
  /** Set by sources that emit bytes already formatted (e.g. Postgres COPY): no `format` stage then. */
  preformatted?: { contentType: string; extension: string; readonly rows: number }
  /** File sources: bytes read so far, for progress by bytes. */
  readonly bytesRead?: number
  /** File sources: the size of the input, when known. */
  readonly totalBytes?: number | undefined
  /** Keyset sources: the key of the last row handed on; exportStream reports it at the commit point. */
  readonly checkpoint?: unknown
  /**
   * Incremental sources: where the next run starts (its `after`), once the source has read its
   * snapshot; exportStream reports it at the commit point (see docs/incremental.md).
   */
  readonly watermark?: unknown
  /** Keyset sources: the key of a row (what `after` takes); split exports list each part's first and last. */
  keyOf?(row: Row): unknown
  /**
   * Asks the source to send rows already encoded as `encoding` (`EncodedRows`) where it can write
   * exactly the bytes the format would (Postgres: COPY); it sends row objects otherwise, and calls
   * `onEncoding` once it knows it encodes. exportStream calls it before data flows, for an export
   * without a transform or split.
   */
  encodeFor?(encoding: TextEncoding, onEncoding?: () => void): void
  /**
   * Asks the source to push `RowBatch`es (the rows of one driver page or input chunk) instead of
   * one row per chunk, so that each stage's per-chunk cost is paid once per batch. exportStream
   * calls it before data flows when the stage after the source takes batches (this library's
   * formats and transforms); any other reader gets rows.
   */
  sendBatches?(): void
}

/** Rows handed on together (see `SourceExtras.sendBatches`): a stage that takes them treats them as these rows in order. */
export interface RowBatch {
  readonly [ROW_BATCH]: true
  readonly rows: readonly Row[]
}

/** The brand of `RowBatch`: an array row is never taken for one. */
export const ROW_BATCH: unique symbol = Symbol.for('stream-export.RowBatch')

/**
 * Chunks (rows or batches) a stage that takes batches lets wait at its input: a batch is a page of
 * rows (1000 from Postgres). Node's default of 16 held 40 MB more at peak, 2 held 35 MB more with
 * pages of 5000 rows; 1 keeps the peak of rows one by one, at the same speed (bench core, postgres).
 */
export const WAITING_CHUNKS = 1

/** A `RowBatch` of `rows`. */
export const rowBatch = (rows: readonly Row[]): RowBatch => ({ [ROW_BATCH]: true, rows })

/** Whether a chunk is a `RowBatch` rather than a row. */
export const isRowBatch = (chunk: unknown): chunk is RowBatch => typeof chunk === 'object' && chunk !== null && (chunk as Partial<RowBatch>)[ROW_BATCH] === true

/**
 * The start of a worksheet among the rows of a workbook (`exportWorkbook`): the XLSX format ends
 * the sheet it has open and writes the rows after it on a new one, under this name and columns.
 */
export interface SheetStart {
  readonly [SHEET_START]: true
  /** The sheet's name (checked by Excel's rules); at the row limit it continues as `name (2)`, ... */
  readonly name: string
  /** The sheet's columns; default the first row's keys (or the source's columns, with zero rows). */
  readonly columns?: ReadonlyArray<{ readonly key: string; readonly header: string }>
  /** The column types the sheet's source knows (Postgres fields), once it knows them. */
  readonly columnTypes: () => ColumnType[] | undefined
  /** Every sheet name the workbook was given: a sheet continued at the row limit takes none of them. */
  readonly reserved: readonly string[]
}

/** The brand of `SheetStart`. */
export const SHEET_START: unique symbol = Symbol.for('stream-export.SheetStart')

/** Whether a chunk is a `SheetStart` rather than a row. */
export const isSheetStart = (chunk: unknown): chunk is SheetStart =>
  typeof chunk === 'object' && chunk !== null && (chunk as Partial<SheetStart>)[SHEET_START] === true

/**
 * What a text format writes, told so that a source can write the same bytes itself: CSV cells or
 * JSON Lines by the value policy (docs/postgres.md), with these options; the format keeps the CSV
 * header and BOM.
 */
export type TextEncoding =
  | {
      kind: 'csv'
      delimiter: string
      quote: string
      eol: string
      nullValue: string
      escapeFormulas: boolean
      binary: 'base64' | 'hex'
    }
  | { kind: 'jsonl'; binary: 'base64' | 'hex' }

/**
 * Output a source has encoded for the format's `TextEncoding`, in which `encodedRows` rows end (a
 * batch may end inside a row, the next continues it): the format passes the bytes on.
 */
export interface EncodedRows {
  readonly [ENCODED_ROWS]: true
  readonly encodedRows: number
  readonly bytes: Buffer
}

/** The brand of `EncodedRows`: no row object is ever taken for one. */
export const ENCODED_ROWS: unique symbol = Symbol.for('stream-export.EncodedRows')

/** `EncodedRows` of `bytes` in which `rows` rows end. */
export const encodedRows = (rows: number, bytes: Buffer): EncodedRows => ({ [ENCODED_ROWS]: true, encodedRows: rows, bytes })

/** Whether a chunk a format receives is `EncodedRows` rather than a row. */
export const isEncodedRows = (chunk: unknown): chunk is EncodedRows =>
  typeof chunk === 'object' && chunk !== null && (chunk as Partial<EncodedRows>)[ENCODED_ROWS] === true

/**
 * What a format stage may tell the pipeline about itself. This library's formats tell all of it;
 * a Transform of your own may tell some (at least `rows`, for the counts).
 */
export interface FormatInfo {
  /** Rows encoded so far. */
  readonly rows?: number
  /** MIME type of the output, e.g. `text/csv`; sinks use it as the default Content-Type. */
  readonly contentType?: string
  /** File extension without the dot, e.g. `csv`; used by `exportKey()`. */
  readonly extension?: string
  /** The output is compressed already (Parquet): a gzip stage after it is refused. */
  readonly compressed?: boolean
  /** Lets the format read the column types a source knows (Postgres field types); exportStream calls it. */
  useSourceColumns?(columns: () => ColumnType[] | undefined): void
  /** Text formats whose bytes a source may write itself (see `SourceExtras.encodeFor`). */
  readonly textEncoding?: TextEncoding
  /** The stage takes `RowBatch`es as well as rows (see `SourceExtras.sendBatches`). */
  readonly takesBatches?: boolean
  /**
   * Bytes of rows taken but not yet handed on (text gathered into a chunk, a Parquet row group,
   * estimated until one has been written): split exports add them when they cut parts by size.
   */
  readonly pendingBytes?: number
  /**
   * A new stage with the same options, for the next file of a split export: text formats keep the
   * columns the first part learned, Parquet the schema it resolved, so that every part agrees.
   */
  nextPart?(): Transform & FormatInfo
  /**
   * Text formats: a stage that continues this output in the next segment of one object, from row
   * `startRow` (default: where this one stopped): no header again, and the end of the output
   * (a JSON array's `]`) only when its `writesEnd` is set.
   */
  nextSegment?(startRow?: number): Transform & FormatInfo & { writesEnd: boolean }
}

/** A format stage of this library: a Transform from row objects (object mode) to bytes. */
export interface Formatter extends Transform, FormatInfo {
  readonly rows: number
  readonly contentType: string
  readonly extension: string
  /** The pure row encoder of a text format, for writers that cut the output at row boundaries (resumable uploads). */
  readonly encoder?: RowEncoder
}

/** Encodes rows as text: `encode(row, index)` for each row (index 0 writes any header), `end(rowCount)` once. */
export interface RowEncoder {
  encode(row: Row, index: number): string
  end(rowCount: number): string
}

/**
 * Where a finished export landed: the locations of this library's sinks. A sink of your own may
 * report any object (`Sink<{ url: string }>`).
 */
export type Location = { path: string } | { bucket: string; key: string; etag?: string; versionId?: string }

/** The compressions an export can run: gzip (`.gz`) and Zstandard (`.zst`, Node >= 22.15). */
export type CompressionName = 'gzip' | 'zstd'

/** How a compressed export is stored: a `.gz` or `.zst` file (not a Content-Encoding, which clients decode). */
export const COMPRESSION_CONTENT_TYPES: Readonly<Record<CompressionName, string>> = { gzip: 'application/gzip', zstd: 'application/zstd' }
/** The file extension a compression adds. */
export const COMPRESSION_EXTENSIONS: Readonly<Record<CompressionName, string>> = { gzip: '.gz', zstd: '.zst' }

/** What the stages before the sink produce; exportStream passes it to the sink before data flows. */
export interface ContentInfo {
  /** e.g. `text/csv; charset=utf-8` */
  contentType?: string
  /** `gzip` when the gzip stage is on. */
  contentEncoding?: string
}

/** Attributes of a span or a log line (undefined ones are left out). */
export type TelemetryAttributes = Record<string, string | number | boolean | undefined>

/**
 * What a stage may record about its work, under the export's span: a child span around a piece of
 * work (a part's upload, the commit) and an event (a part landed). A no-op without OpenTelemetry
 * and without a logger.
 */
export interface StageTelemetry {
  span<T>(name: string, attributes: TelemetryAttributes, work: () => Promise<T>): Promise<T>
  event(name: string, attributes?: TelemetryAttributes): void
}

/** What a sink may tell the pipeline; this library's sinks tell all of it, any Writable may. */
export interface SinkInfo<L extends object = Location> {
  /** Where the export landed, set at the commit point (rename, upload completed). */
  readonly location?: L | undefined
  /** Bytes the destination has acknowledged so far, for sinks that know (S3); reported with progress. */
  readonly uploadedBytes?: number
  /** Defaults for metadata the sink stores (S3 Content-Type / Content-Encoding); explicit options win. */
  setContentInfo?(info: ContentInfo): void
  /** Where the sink records its part uploads and its commit (spans under the export's). */
  setTelemetry?(telemetry: StageTelemetry): void
  /** After a failure: what the sink could not remove (a multipart upload it could not abort), for the error's `leftBehind`. */
  readonly leftBehind?: readonly string[]
  /** The full checksum of the bytes the sink stored, set at the commit point (see docs/integrity.md). */
  readonly checksum?: ObjectChecksum
}

/** A sink: the last stage of a pipeline. Its `location` is set once it has finished successfully. */
export interface Sink<L extends object = Location> extends Writable, SinkInfo<L> {
  readonly location: L | undefined
}

/**
 * Where the files or objects of an export in parts go (`exportStream({ split })`). Names are whole
 * paths or keys, chosen by the part model (see docs/parts.md): parts under names no other run
 * uses, the manifest last.
 */
export interface PartStore<L extends object = Location> {
  /** The sink's own path or key: the parts and the manifest are named after it. */
  readonly name: string
  /** A sink writing `name`, with the template sink's options (content type, storage class, ...). */
  sink(name: string): Sink<L> & Discardable
  /** The bytes stored at `name`, or `undefined` when nothing is. */
  read(name: string): Promise<Buffer | undefined>
  /** Stores `body` at `name`, whole and at once (the manifest, as `application/json`). */
  write(name: string, body: Buffer): Promise<L>
  /** Removes `name`; nothing there is not an error. */
  remove(name: string): Promise<void>
  /** The location of `name` (without the store's answer: no ETag). */
  locationOf(name: string): L
  /** Every name stored that starts with `prefix` (a whole path or key prefix). */
  list(prefix: string): Promise<string[]>
  /**
   * Makes every part whose sink has finished durable, where a part is not durable when its sink
   * finishes (files: one fdatasync each, done together). Called before the manifest and before a
   * checkpoint that names parts.
   */
  sync?(): Promise<void>
}

/** A sink that can also take an export as parts (`fileSink`, `s3Sink`): it hands out their store. */
export interface SplitSink<L extends object = Location> {
  partStore(): PartStore<L>
}

/**
 * A sink that takes an export as segments of one object (the parts of one multipart upload):
 * exportStream cuts them between rows at `partBytes(n)`, each through its own compression stage;
 * the format continues across them (its header only in the first, its end only in the last).
 * Each finished part is handed to `partDone` in order, and `commit()` is the commit point.
 */
export interface SegmentSink<L extends object = Location> {
  /** Rows exported before this attempt: the format's row count starts there (no header again). */
  readonly startRow: number
  /**
   * Whether the format's end (a JSON array's `]`) is written in the last segment. Default `true`;
   * `false` where the output goes on after these segments (a shard before the last).
   */
  readonly writesEnd?: boolean
  /** The size at which part `n` (from 1) is cut. */
  partBytes(n: number): number
  /** The sink of part `n`; `isLast()` tells, once the part is ending, whether it holds the output's end. */
  partSink(n: number, isLast: () => boolean): Sink<L> & Discardable
  /** Called after each part has landed, in order (e.g. to save a checkpoint); `last` for the one holding the output's end. */
  partDone(part: PartInfo<L>, last: boolean): Promise<void>
  /** Assembles the object from the parts: the commit point. */
  commit(): Promise<L>
  /**
   * Set when this run should end early (a Lambda nearing its deadline): the export then ends at the
   * next cut, once that part has landed (`partDone`), without the format's end or the commit, and
   * exportStream resolves with `paused: true`. The checkpoint continues it in another run.
   */
  readonly pausing?: boolean
  /** Where the object landed, once committed. */
  readonly location: L | undefined
  /** The object's full checksum, once committed (of every segment, earlier attempts' too). */
  readonly checksum?: ObjectChecksum
}

/**
 * A stage with a commit point of its own that lets the pipeline act just before it: `beforeCommit`
 * is awaited once every byte is stored (S3: every part acknowledged), before the commit (the
 * final progress report, with everything uploaded). A rejection fails the export uncommitted.
 */
export interface CommitHook {
  beforeCommit: (() => Promise<void>) | undefined
}

/** A sink whose committed output can be taken back: a split export that fails removes its parts. */
export interface Discardable {
  /** Removes what the sink committed (the file, the object); nothing when it committed nothing. */
  discard(): Promise<void>
}

/** One part of a split export, as the manifest lists it. */
export interface PartInfo<L extends object = Location> {
  /**
   * File name of the part (the last segment of its path or key); in a partitioned export, its
   * path from the manifest's folder (`acme/2026-01-1a2b3c4d-00001.csv.gz`).
   */
  name: string
  /** Where the part landed. */
  location: L
  rows: number
  /** Bytes of the part as stored (compressed when gzip is on). */
  bytes: number
  /** SHA-256 of the stored bytes, hex. */
  sha256: string
  /** The part's full checksum as its store verified it (S3) or as written (files); see docs/integrity.md. */
  checksum?: ObjectChecksum
  /** Source key of the part's first and last row, for keyset sources (JSON: a bigint as a string). */
  firstKey?: unknown
  lastKey?: unknown
  /** A partitioned export: the partition's values, raw, by placeholder (`{ customer: 'acme/eu' }`). */
  partition?: Record<string, unknown>
}

/** The manifest of a split export: written beside the parts, last, as the export's commit point. */
export interface Manifest<L extends object = Location> {
  version: 1
  /**
   * The export this manifest commits: the last segment of the sink's path or key
   * (`orders.csv.gz`). Another export is never committed under the same manifest.
   */
  name?: string
  /** When the manifest was written (ISO 8601, UTC). */
  createdAt: string
  /** The format's file extension: `csv`, `jsonl`, `json`, `parquet`. */
  format: string
  /** Content type of each part before compression. */
  contentType: string
  /** How each part is compressed (`.gz`, `.zst`), or `none`. */
  compression: CompressionName | 'none'
  /** Column names, when the source or the first row told them. */
  columns?: string[]
  /** A partitioned export: the placeholders of its name template, which each part's `partition` gives. */
  partitionBy?: string[]
  rows: number
  bytes: number
  parts: Array<PartInfo<L>>
}
