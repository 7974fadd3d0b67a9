// The negotiation between stages that exportStream() settles before any data flows: whether the
// export runs in parts (split output, or segments of one upload) and through which writer (the
// compression stage is settled in compression.ts).
import type { Readable, Transform } from 'node:stream'
import { invalidOption } from '../core/errors.js'
import type { FormatInfo, PartStore, SegmentSink, SourceExtras, SplitSink, StageTelemetry } from '../core/types.js'
import { checkPartitionBy } from '../parts/partition-options.js'
import { PartitionWriter } from '../parts/partitions.js'
import { checkSplitOptions, type SplitOptions } from '../parts/split-options.js'
import { SplitWriter, type SplitWriterOptions } from '../parts/writer.js'
import { checkTransforms } from '../stages/map-rows.js'
import type { Compression } from './compression.js'
import type { ExportOptions } from './options.js'

const isSplitSink = <L extends object>(sink: unknown): sink is SplitSink<L> => typeof (sink as Partial<SplitSink<L>>).partStore === 'function'
export const isSegmentSink = <L extends object>(sink: unknown): sink is SegmentSink<L> =>
  typeof (sink as Partial<SegmentSink<L>>).partSink === 'function' && typeof (sink as Partial<SegmentSink<L>>).commit === 'function'

/**
 * Checks a `split` or `partitionBy` option (or a sink that takes segments of one object) and
 * builds the last stage of an export in parts (see docs/parts.md, docs/partitions.md).
 */
export function splitWriter<L extends object>(
  options: ExportOptions<L>,
  source: Readable & SourceExtras,
  format: Transform & FormatInfo,
  compression: Compression | undefined,
  telemetry: () => StageTelemetry | undefined,
): SplitWriter<L> | PartitionWriter<L> {
  const { split, sink, partitionBy } = options
  const what = partitionBy === undefined ? 'split' : 'partitionBy'
  let target: SplitWriterOptions<L>['target']
  let limits: SplitOptions = {}
  if (source.preformatted) invalidOption(what, 'undefined for a source that emits formatted bytes (COPY): parts are cut between rows', options[what])
  if (isSegmentSink<L>(sink)) {
    if (split !== undefined || partitionBy !== undefined) invalidOption(what, 'undefined for a sink that takes one object in segments', options[what])
    if (typeof format.nextSegment !== 'function') invalidOption('format', 'a text format (csv(), jsonl(), jsonArray()) for an upload in segments', format)
    target = { segments: sink }
  } else {
    if (split !== undefined || partitionBy === undefined) limits = checkSplitOptions(split)
    if (!isSplitSink<L>(sink))
      invalidOption('sink', `a sink that names parts (fileSink() or s3Sink()) for a ${partitionBy === undefined ? 'split' : 'partitioned'} export`, sink)
    if (typeof format.nextPart !== 'function')
      invalidOption(
        'format',
        `a format of this library (csv(), jsonl(), jsonArray(), parquet(), xlsx()) for a ${partitionBy === undefined ? 'split' : 'partitioned'} export`,
        format,
      )
    target = { files: recordingParts(sink.partStore(), telemetry) }
  }
  if (compression && compression.next === undefined) {
    invalidOption('gzip', 'true or gzip options for an export in parts (each part gets its own compression stage)', options.gzip)
  }
  // The first part takes the compression stage already made; each next part a new one alike.
  let ready = compression?.stage
  const nextStage = () => {
    const stage = ready ?? compression!.next!()
    ready = undefined
    return stage
  }
  const common = {
    format,
    compression: compression && { name: compression.name, stage: nextStage },
    transforms: options.transform === undefined ? [] : checkTransforms(options.transform),
    keyOf: source.keyOf?.bind(source),
    columns: () => source.columnTypes?.()?.map((column) => column.name),
    limits,
  }
  if (partitionBy !== undefined && 'files' in target) {
    return new PartitionWriter<L>({ ...common, store: target.files, settings: checkPartitionBy(partitionBy, target.files.name) })
  }
  return new SplitWriter<L>({ ...common, target })
}

/** The store with each part's sink recording under the export's telemetry (its upload, its commit). */
function recordingParts<L extends object>(store: PartStore<L>, telemetry: () => StageTelemetry | undefined): PartStore<L> {
  const sink = (name: string) => {
    const part = store.sink(name)
    const current = telemetry()
    if (current) part.setTelemetry?.(current)
    return part
  }
  // (Every other member is the store's own, bound to it: a store may keep private fields.)
  return new Proxy(store, {
    get(target, property) {
      if (property === 'sink') return sink
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}
