import type { Writable } from 'node:stream'

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

/** A sink: the last stage of a pipeline. Its `location` is set once it has finished successfully. */
export interface Sink<L extends object = Location> extends Writable {
  readonly location: L | undefined
  /** Bytes the destination has acknowledged so far, for sinks that know (S3); reported with progress. */
  readonly uploadedBytes?: number
  /** Defaults for metadata the sink stores (S3 Content-Type / Content-Encoding); explicit options win. */
  setContentInfo?(info: ContentInfo): void
}
