// The contracts every part of the library shares: sources, formats, stages and sinks import
// them from here, never from the pipeline or from one another (docs/architecture.md).
import type { Transform, Writable } from 'node:stream'

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
  /** Set by sources that emit bytes already formatted (e.g. Postgres COPY): no `format` stage then. */
  preformatted?: { contentType: string; extension: string; readonly rows: number }
  /** File sources: bytes read so far, for progress by bytes. */
  readonly bytesRead?: number
  /** File sources: the size of the input, when known. */
  readonly totalBytes?: number | undefined
  /** Keyset sources: the key of the last row handed on; exportStream reports it at the commit point. */
  readonly checkpoint?: unknown
}

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

/** What the stages before the sink produce; exportStream passes it to the sink before data flows. */
export interface ContentInfo {
  /** e.g. `text/csv; charset=utf-8` */
  contentType?: string
  /** `gzip` when the gzip stage is on. */
  contentEncoding?: string
}

/** What a sink may tell the pipeline; this library's sinks tell all of it, any Writable may. */
export interface SinkInfo<L extends object = Location> {
  /** Where the export landed, set at the commit point (rename, upload completed). */
  readonly location?: L | undefined
  /** Bytes the destination has acknowledged so far, for sinks that know (S3); reported with progress. */
  readonly uploadedBytes?: number
  /** Defaults for metadata the sink stores (S3 Content-Type / Content-Encoding); explicit options win. */
  setContentInfo?(info: ContentInfo): void
}

/** A sink: the last stage of a pipeline. Its `location` is set once it has finished successfully. */
export interface Sink<L extends object = Location> extends Writable, SinkInfo<L> {
  readonly location: L | undefined
}
