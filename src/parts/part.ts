// A part being written: its own format, compression and sink stages in one pipeline, and what it
// holds so far (rows, keys, bytes before and after compression, its SHA-256).
import type { Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { STAGE_CODES, toExportError, type ExportStage } from '../core/errors.js'
import type { Discardable, FormatInfo, Sink } from '../core/types.js'
import { progress } from '../stages/progress.js'
import { Sha256Tap } from '../stages/sha256.js'

export type Format = Transform & FormatInfo
/** A compression stage that tells the input bytes it has compressed and handed on (ours does). */
export type Compression = Transform & { readonly bytesWritten?: number }

/** A part being written: its stages, run by their own pipeline, and what it holds so far. */
export class OpenPart<L extends object> {
  rows = 0
  /** The last part: it holds the end of the output. */
  last = false
  firstKey: unknown
  lastKey: unknown
  failedStage: ExportStage | undefined
  readonly digest = new Sha256Tap()
  readonly counter = progress() // counts the bytes before compression
  readonly done: Promise<void>

  constructor(
    readonly number: number,
    readonly format: Format,
    readonly compression: Compression | undefined,
    readonly sink: Sink<L> & Discardable,
    compressionName: ExportStage = 'gzip',
  ) {
    const stages: Array<[ExportStage, Transform | Writable]> = [
      ['format', format],
      ['progress', this.counter],
    ]
    if (compression) stages.push([compressionName, compression])
    stages.push(['progress', this.digest], ['sink', sink])
    for (const [stage, stream] of stages) stream.once('error', () => (this.failedStage ??= stage))
    this.done = pipeline(stages.map(([, stream]) => stream)).catch((error: unknown) => {
      const stage = this.failedStage ?? 'sink'
      throw toExportError(error, STAGE_CODES[stage], stage)
    })
    this.done.then(
      // A landed part's sink and format are kept (to take the part back if the export fails, to
      // make the next part's format); the pipeline's listeners on them would keep every stage and
      // its buffers too, and a partitioned export has thousands of parts.
      () => setImmediate(() => stages.forEach(([, stream]) => stream.closed && stream.removeAllListeners())),
      () => {}, // awaited when the part ends or the export stops
    )
  }

  /**
   * The bytes this part will have once ended, estimated: what has reached the sink, plus what is
   * still in the format and the compressor at the compression ratio so far.
   */
  projectedBytes(): number {
    const encoded = this.counter.bytes + (this.format.pendingBytes ?? 0)
    if (!this.compression) return encoded // every encoded byte lands as it is
    const landed = this.digest.bytes
    const compressed = this.compression.bytesWritten ?? 0
    const ratio = compressed > 0 ? landed / compressed : 1
    return landed + (encoded - compressed) * ratio
  }
}
