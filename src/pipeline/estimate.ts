// estimateExport(): how big an export will be, from the source's count and a sample of its first
// rows through the export's own format and compression; nothing is written and no upload created.
import { Readable, Writable } from 'node:stream'
import { invalidOption, toExportError } from '../core/errors.js'
import { checkObject, checkPositiveInteger, optionNames } from '../core/options.js'
import type { SourceExtras } from '../core/types.js'
import { checkSplitOptions, type SplitOptions } from '../parts/split-options.js'
import { fromIterable, type RowIterable } from '../sources/iterable.js'
import { exportStream } from './export-stream.js'
import { UNTRACED } from '../telemetry/otel.js'
import type { ExportOptions } from './options.js'

/** What `estimateExport` takes: the export's own options, without its sink. */
export interface EstimateOptions extends Pick<ExportOptions, 'source' | 'format' | 'transform' | 'gzip' | 'compression' | 'split' | 'signal'> {
  /** Rows read through the format and compression to measure their size. Default 10,000. */
  sampleRows?: number
}

/** The size of an export, before running it (see `estimateExport`). */
export interface ExportEstimate {
  /**
   * The rows the source says it will give: exact or the planner's estimate, as the source's `count`
   * option asks (`postgresSource({ count: 'estimate' })`); `undefined` when it cannot tell.
   */
  rows: number | undefined
  /** What the sample measured: its first rows through the format and compression. */
  sample: { rows: number; bytes: number; uncompressedBytes: number; durationMs: number }
  /** `rows` at the sample's bytes per row (compressed when compression is on). */
  bytes: number | undefined
  uncompressedBytes: number | undefined
  /** With `split`: the parts the export would write (a partitioned export's depend on its values). */
  parts: number | undefined
  /** `rows` at the sample's rate, from its first row to its last: the export's, if the source keeps it. */
  durationMs: number | undefined
}

const ESTIMATE_OPTION_NAMES = optionNames<EstimateOptions>({
  source: true,
  format: true,
  transform: true,
  gzip: true,
  compression: true,
  split: true,
  signal: true,
  sampleRows: true,
})

/**
 * Estimates an export without running it: the source's row count (its `count` option) and the
 * bytes per row of its first `sampleRows` rows through the same format and compression, into no
 * destination. The source is read that far and then closed (its connection released). The CLI's
 * `--dry-run` prints this.
 */
export async function estimateExport(options: EstimateOptions): Promise<ExportEstimate> {
  const { sampleRows = 10_000 } = options
  let limits: SplitOptions
  try {
    checkObject('options', options, ESTIMATE_OPTION_NAMES)
    checkPositiveInteger('sampleRows', sampleRows)
    limits = options.split === undefined ? {} : checkSplitOptions(options.split)
    if ((options.source as Partial<SourceExtras>).preformatted)
      invalidOption('source', 'a source of rows (a COPY source writes bytes: estimate its query with postgresSource)', options.source)
  } catch (error) {
    if (options.source instanceof Readable) options.source.destroy() // (its query may have started)
    throw error
  }
  const source: Readable & SourceExtras = options.source instanceof Readable ? options.source : fromIterable(options.source as RowIterable)
  const counted = (source.countRows?.() ?? Promise.resolve(undefined)).catch((error: unknown) => {
    throw toExportError(error, 'ERR_SOURCE', 'source')
  })
  counted.catch(() => {}) // awaited below, after the sample
  let first: number | undefined
  let last = 0
  let rows = 0
  const sampled: Readable & SourceExtras = source.take(sampleRows).map((row: unknown) => {
    first ??= performance.now()
    last = performance.now()
    rows++
    return row
  })
  // (The format sees the source's column types, as in the export: Parquet's schema, CSV's escaping.)
  if (source.columnTypes) sampled.columnTypes = () => source.columnTypes?.()
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() })
  const { split: _split, sampleRows: _sampleRows, source: _source, ...rest } = options
  let sample: Awaited<ReturnType<typeof exportStream>>
  try {
    // Not an export: no span, no metrics.
    sample = await exportStream({ ...rest, source: sampled, sink, [UNTRACED]: true } as ExportOptions)
  } finally {
    // The source is closed (its connection released) before the estimate is given.
    if (!source.destroyed) source.destroy()
    if (!source.closed) await new Promise((resolve) => source.once('close', resolve))
  }
  const total = await counted
  const durationMs = first === undefined ? 0 : last - first
  // Per row of the source (a transform may drop rows: the count is of the source's).
  const perRow = (bytes: number) => (total === undefined || rows === 0 ? undefined : Math.round((bytes / rows) * total))
  const bytes = perRow(sample.bytes)
  const uncompressedBytes = perRow(sample.uncompressedBytes)
  let parts: number | undefined
  if (limits.rows !== undefined || limits.bytes !== undefined) {
    const byRows = limits.rows !== undefined && total !== undefined ? Math.ceil(total / limits.rows) : undefined
    const byBytes = limits.bytes !== undefined && bytes !== undefined ? Math.ceil(bytes / limits.bytes) : undefined
    parts = byRows === undefined ? byBytes : byBytes === undefined ? byRows : Math.max(byRows, byBytes)
    if (parts !== undefined) parts = Math.max(parts, 1)
  }
  return {
    rows: total,
    sample: { rows: sample.rows, bytes: sample.bytes, uncompressedBytes: sample.uncompressedBytes, durationMs },
    bytes,
    uncompressedBytes,
    parts,
    durationMs: total === undefined || rows < 2 ? undefined : Math.round((durationMs / (rows - 1)) * total),
  }
}
