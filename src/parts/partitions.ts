// A partitioned export: rows routed by their partition values into one part writer per partition
// (a complete file or object each, cut further by `split`), and one manifest over all of them,
// written last: the commit point of the whole set (docs/partitions.md).
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { ExportError, invalidOption, toExportError } from '../core/errors.js'
import { relativeName } from '../core/location.js'
import { whenClosed } from '../core/streams.js'
import { isRowBatch, rowBatch, WAITING_CHUNKS, type Location, type Manifest, type PartInfo, type PartStore, type Row, type RowBatch } from '../core/types.js'
import { applyTransforms, type RowTransform } from '../stages/map-rows.js'
import { claimManifest, commitError, commitManifest } from './commit.js'
import { buildManifest, manifestBytes, partsKind } from './manifest.js'
import { nameParts, newRunId } from './names.js'
import { nextCheckpoint, plainJson, removeRunParts, type FollowedPartition, type SavedPartition } from './partition-checkpoint.js'
import { expandTemplate, partitionPartOf, valueText } from './partition-names.js'
import type { PartitionSettings } from './partition-options.js'
import type { Format } from './part.js'
import type { SplitOptions } from './split-options.js'
import { SplitWriter, type SplitWriterOptions } from './writer.js'

/** Partitions whose last part may still be landing while rows go on into others. */
const MAX_CLOSING = 4

interface Partition<L extends object> {
  values: Record<string, unknown>
  writer: SplitWriter<L>
  finished: Promise<void>
  /** What the checkpoint follows of it (with `partitionBy.checkpoint`). */
  follow: FollowedPartition | undefined
}

export interface PartitionWriterOptions<L extends object> extends Pick<SplitWriterOptions<L>, 'compression' | 'keyOf' | 'columns'> {
  store: PartStore<L>
  settings: PartitionSettings
  format: Format
  transforms: RowTransform[]
  limits: SplitOptions
}

/**
 * The last stage of a partitioned export: takes rows (object mode), applies the transforms, writes
 * each into its partition's part writer, and on finish writes the one manifest (commit.ts). A
 * failure or a destroy before the manifest removes the parts of every partition (but those a
 * saved checkpoint holds: see partition-checkpoint.ts).
 */
export class PartitionWriter<L extends object = Location> extends Writable {
  /** Rows come in batches when nothing transforms them and the format takes batches (see `SourceExtras.sendBatches`). */
  readonly takesBatches: boolean
  /** Called once every part has landed, before the manifest (the final progress report). */
  beforeCommit: (() => Promise<void>) | undefined
  readonly #options: PartitionWriterOptions<L>
  readonly #settings: PartitionSettings
  readonly #store: PartStore<L>
  /** Partitions being written, least recently written first, by the text of their values (see #identify). */
  readonly #open = new Map<string, Partition<L>>()
  readonly #all: Array<Partition<L>> = []
  readonly #finished = new Set<string>()
  readonly #closing = new Set<Promise<void>>()
  /** Partition paths by their lower-case form: two that differ only in case get apart names. */
  readonly #cases = new Map<string, string[]>()
  #nextFormat: Format | undefined
  readonly #run: string
  #index = 0
  #rows = 0
  /** The partitions a checkpoint this run continues from kept (landed in an earlier run). */
  readonly #restored: SavedPartition[]
  readonly #restoredBytes: number
  /** The source row before the one being routed, and the last one taken (for a checkpoint's key). */
  #before: Row | undefined
  #lastSource: Row | undefined
  /** Partitions of this run in the last checkpoint saved (or being saved): a failure keeps their parts. */
  #kept = 0
  #saving: Promise<void> | undefined
  #savedAt = 0
  #firstRow: Row | undefined
  /** The partition of the row before, and its column values. */
  #last: { key: string; partition: Partition<L>; raw: unknown[] } | undefined
  /** Paths by their values' text (see #identify): encoding each row's values would cost more than the rest of the row. */
  readonly #paths = new Map<string, string>()
  #manifest: Manifest<L> | undefined
  #location: L | undefined
  readonly #leftBehind: string[] = []
  #committing: Promise<{ landed: unknown }> | undefined
  #stopped = false

  constructor(options: PartitionWriterOptions<L>) {
    const batches = options.transforms.length === 0 && options.format.takesBatches === true && options.limits.bytes === undefined
    // A batch is a thousand rows: a few of them wait, as for any stage that takes batches.
    super({ objectMode: true, highWaterMark: batches ? WAITING_CHUNKS : 64 })
    this.#options = options
    this.#settings = options.settings
    this.#store = { ...options.store, name: options.settings.manifestName }
    this.#nextFormat = options.format
    this.takesBatches = batches
    const { checkpoint } = options.settings
    const from = checkpoint?.from
    // Without keys a run cannot be continued: a checkpoint with no partitions only names the run.
    if (checkpoint && options.keyOf === undefined && (from === undefined || from.partitions.length > 0))
      invalidOption('partitionBy.checkpoint', 'used with a keyset source (its rows have keys to continue after)', checkpoint)
    this.#run = from?.run ?? newRunId()
    this.#restored = from?.partitions ?? []
    this.#rows = from?.rows ?? 0
    this.#restoredBytes = this.#restored.reduce((sum, partition) => sum + partition.parts.reduce((bytes, part) => bytes + part.bytes, 0), 0)
    for (const { values, path } of this.#restored) {
      this.#finished.add(this.#identify(values).key)
      this.#caseApart(path)
    }
  }

  get rows(): number {
    return this.#rows
  }
  get bytes(): number {
    return this.#all.reduce((sum, partition) => sum + partition.writer.bytes, this.#restoredBytes)
  }
  get uncompressedBytes(): number {
    return this.#all.reduce((sum, partition) => sum + partition.writer.uncompressedBytes, 0)
  }
  /** Every part, partition after partition (in the order their first rows came). */
  get parts(): ReadonlyArray<PartInfo<L>> {
    return this.#manifest?.parts ?? []
  }
  get manifest(): Manifest<L> | undefined {
    return this.#location === undefined ? undefined : this.#manifest
  }
  get location(): L | undefined {
    return this.#location
  }
  get leftBehind(): string[] {
    return this.#leftBehind
  }

  override _construct(callback: (error?: Error | null) => void): void {
    const { format, compression, settings } = this.#options
    const from = settings.checkpoint?.from
    claimManifest(this.#store, { ...partsKind(format, compression), name: settings.template.relative })
      // A run continuing a checkpoint first removes what the interrupted run wrote past it. (A
      // checkpoint of no partitions is no run's: the job processor's first, which lists nothing.)
      .then(async () => {
        if (from && from.partitions.length > 0) this.#leftBehind.push(...(await removeRunParts(this.#options.store, settings.template, from.run, from)))
      })
      .then(
        () => callback(),
        (error: unknown) => callback(toExportError(error, 'ERR_SINK', 'sink')),
      )
  }

  override _write(source: Row | RowBatch, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (isRowBatch(source)) return void this.#putBatch(source.rows).then(() => callback(), callback)
    this.#before = this.#lastSource
    this.#lastSource = source
    let row: unknown
    try {
      row = applyTransforms(this.#options.transforms, source, this.#index++)
    } catch (error) {
      return callback(error as Error)
    }
    if (row instanceof Promise) {
      row.then((value) => (value === undefined ? undefined : this.#route(value as Row))).then(() => callback(), callback)
      return
    }
    let waiting: Promise<void> | undefined
    try {
      waiting = row === undefined ? undefined : this.#route(row as Row)
    } catch (error) {
      return callback(error as Error)
    }
    // Synchronous for a row of an open partition that needs no waiting (no backpressure, no new partition).
    if (waiting === undefined) callback()
    else waiting.then(() => callback(), callback)
  }

  // The row into its partition's writer; a promise when it must wait (a partition to finish, backpressure).
  #route(row: Row): Promise<void> | undefined {
    const partition = this.#partitionOf(row)
    if (partition instanceof Promise) return partition.then((started) => this.#write(started, row, 1, this.#index))
    return this.#write(partition, row, 1, this.#index)
  }

  // A batch (see takesBatches): each run of rows of one partition goes to it as one slice.
  async #putBatch(rows: readonly Row[]): Promise<void> {
    const first = this.#index // (the index counts rows, for the row number in an error)
    for (let at = 0; at < rows.length;) {
      this.#index = first + at + 1
      this.#before = at > 0 ? rows[at - 1] : this.#lastSource
      const partition = await this.#partitionOf(rows[at]!)
      let end = at + 1
      while (end < rows.length && ((this.#index = first + end + 1), this.#sameAsLast(rows[end]!))) end++
      await this.#write(partition, rowBatch(rows.slice(at, end)), end - at, first + end)
      at = end
    }
    this.#index = first + rows.length
    this.#lastSource = rows.at(-1)
  }

  // Whether a row belongs to the partition of the row before.
  #sameAsLast(row: Row): boolean {
    const { columns } = this.#settings
    const last = this.#last
    if (last === undefined || this.#open.get(last.key) !== last.partition) return false
    // Ordered rows by columns: the same column values (no values object, no path).
    if (columns) return columns.every((column, i) => row[column] === last.raw[i])
    return this.#identify(this.#valuesOf(row)).key === last.key
  }

  // The partition of a row: the row before's, an open one, or a new one (which may first wait for
  // the least recently written to finish).
  #partitionOf(row: Row): Partition<L> | Promise<Partition<L>> {
    if (this.#settings.columns && this.#sameAsLast(row)) return this.#last!.partition
    const values = this.#valuesOf(row)
    const { key, path } = this.#identify(values)
    const partition = this.#open.get(key)
    if (partition === undefined) return this.#newPartition(key, path, values, row)
    this.#open.delete(key) // written now: the most recent
    this.#open.set(key, partition)
    this.#last = { key, partition, raw: this.#settings.columns?.map((column) => row[column]) ?? [] }
    return partition
  }

  #valuesOf(row: Row): Record<string, unknown> {
    let values: Record<string, unknown>
    try {
      values = this.#settings.values(row)
      if (typeof values !== 'object' || values === null) throw new Error(`it returned ${String(values)}`)
    } catch (error) {
      throw new ExportError('ERR_TRANSFORM', 'transform', `partitionBy failed on row ${this.#index - 1}: ${(error as Error).message}`, { cause: error })
    }
    const missing = this.#settings.template.names.find((name) => !(name in values))
    if (missing !== undefined) throw new ExportError('ERR_TRANSFORM', 'transform', `partitionBy gave no value for {${missing}} on row ${this.#index - 1}`)
    return values
  }

  async #newPartition(key: string, path: string, values: Record<string, unknown>, row: Row): Promise<Partition<L>> {
    if (this.#finished.has(key)) {
      throw new ExportError(
        'ERR_SOURCE',
        'source',
        `A row of the partition ${path.slice(this.#settings.template.base.length)} came after that partition was finished (${this.#settings.maxOpen} others were written since): order the rows by the partition columns, or raise partitionBy.maxOpen`,
      )
    }
    if (this.#open.size >= this.#settings.maxOpen) await this.#finishOldest()
    const partition = this.#start(path, values)
    this.#open.set(key, partition)
    this.#last = { key, partition, raw: this.#settings.columns?.map((column) => row[column]) ?? [] }
    this.#firstRow ??= row
    return partition
  }

  // (`last`: the number of the chunk's last source row, from 1 in this run.)
  #write(partition: Partition<L>, chunk: Row | RowBatch, rows: number, last: number): Promise<void> | undefined {
    this.#rows += rows
    if (partition.follow) partition.follow.lastRow = last
    if (partition.writer.write(chunk)) return undefined
    return Promise.race([once(partition.writer, 'drain'), partition.finished]).then(() => undefined)
  }

  // A partition's identity (the text of its values: 1 and '1' are one partition) and its path,
  // from a cache. Two partitions whose paths are the same (`{a}-{b}` of x-y,z and x,y-z) are apart
  // by their identity, and their names by #caseApart.
  #identify(values: Record<string, unknown>): { key: string; path: string } {
    const key = JSON.stringify(
      this.#settings.template.names.map((name) => (values[name] === null || values[name] === undefined ? null : valueText(values[name]))),
    )
    let path = this.#paths.get(key)
    if (path === undefined) {
      path = expandTemplate(this.#settings.template, values)
      if (this.#paths.size >= 10_000) this.#paths.clear()
      this.#paths.set(key, path)
    }
    return { key, path }
  }

  #start(path: string, values: Record<string, unknown>): Partition<L> {
    if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped')
    const format = this.#nextFormat!
    this.#nextFormat = format.nextPart?.()
    const { compression, keyOf, columns, limits, transforms } = this.#options
    const writer = new SplitWriter<L>({
      target: { files: { ...this.#options.store, name: this.#caseApart(path) } },
      format,
      compression,
      transforms: [],
      keyOf: transforms.length === 0 ? keyOf : undefined, // the key of a transformed row is not the source's
      columns,
      limits,
      commits: false,
      run: this.#run,
    })
    const finished = new Promise<void>((resolve, reject) => {
      writer.once('finish', resolve)
      writer.once('error', reject)
    })
    finished.catch((error: Error) => this.destroy(error)) // a partition that fails fails the export at once
    const partition: Partition<L> = {
      values,
      writer,
      finished,
      follow: this.#settings.checkpoint && this.#options.keyOf ? this.#follow(path, values, writer) : undefined,
    }
    if (partition.follow)
      void finished.then(
        () => {
          partition.follow!.landed = true
          try {
            this.#checkpoint()
          } catch (error) {
            this.destroy(toExportError(error, 'ERR_SINK', 'sink'))
          }
        },
        () => {},
      )
    this.#all.push(partition)
    return partition
  }

  #follow(path: string, values: Record<string, unknown>, writer: SplitWriter<L>): FollowedPartition {
    const base = this.#settings.template.base
    let saved: SavedPartition | undefined
    return {
      firstRow: this.#index,
      lastRow: this.#index,
      keyBefore: this.#before === undefined ? undefined : this.#options.keyOf!(this.#before),
      landed: false,
      saved: () =>
        (saved ??= plainJson({
          values,
          path,
          rows: writer.rows,
          parts: writer.parts.map((part) => ({ ...part, name: relativeName(part.location, base), partition: values })),
        })),
    }
  }

  // After a partition landed: a checkpoint, if one is due and holds more partitions than the last.
  #checkpoint(): void {
    const { checkpoint } = this.#settings
    const due = this.#savedAt + (checkpoint?.eager?.aborted ? 0 : (checkpoint?.intervalMs ?? 0))
    if (!checkpoint || !this.#options.keyOf || this.#saving || this.#stopped || this.#committing || performance.now() < due) return
    const next = nextCheckpoint(
      checkpoint.from,
      this.#run,
      this.#all.map((partition) => partition.follow!),
      this.#kept,
    )
    if (!next) return
    // Kept from now unless the save fails (a failure meanwhile keeps them; a continuing run sweeps).
    const before = this.#kept
    this.#kept = next.count
    this.#savedAt = performance.now()
    this.#saving = Promise.resolve()
      .then(() => this.#store.sync?.()) // (the parts it names first)
      .then(() => checkpoint.save(next.checkpoint))
      .then(
        () => (this.#saving = undefined),
        (error: unknown) => {
          this.#kept = before
          this.destroy(new ExportError('ERR_SINK', 'sink', `Saving the checkpoint failed: ${(error as Error)?.message ?? String(error)}`, { cause: error }))
        },
      )
  }

  // `out/Acme.csv` after `out/acme.csv` becomes `out/Acme~2.csv`: apart on a case-insensitive disk
  // (and a path another partition's values made too, alike).
  #caseApart(path: string): string {
    const lower = path.toLowerCase()
    const same = this.#cases.get(lower) ?? []
    this.#cases.set(lower, [...same, path])
    if (same.length === 0) return path
    const { dir, stem, extensions } = nameParts(path)
    return `${dir}${stem}~${same.length + 1}${extensions}`
  }

  async #finishOldest(): Promise<void> {
    const [key, partition] = this.#open.entries().next().value!
    this.#open.delete(key)
    this.#finished.add(key)
    partition.writer.end()
    // (Its failure fails the export through `finished`; this promise only counts it.)
    const closing = partition.finished.finally(() => this.#closing.delete(closing)).catch(() => {})
    this.#closing.add(closing)
    if (this.#closing.size > MAX_CLOSING) await Promise.race(this.#closing)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#finish().then(() => callback(), callback)
  }

  async #finish(): Promise<void> {
    for (const partition of this.#open.values()) partition.writer.end()
    await Promise.all(this.#all.map((partition) => partition.finished))
    await this.#saving
    await this.beforeCommit?.()
    const { format, compression, settings, columns } = this.#options
    const base = settings.template.base
    const parts = [
      ...this.#restored.flatMap((partition) => partition.parts as unknown as Array<PartInfo<L>>),
      ...this.#all.flatMap((partition) =>
        partition.writer.parts.map((part) => ({ ...part, name: relativeName(part.location, base), partition: partition.values })),
      ),
    ]
    const manifest = buildManifest(
      settings.template.relative,
      { ...partsKind(format, compression), columns: columns() ?? (this.#firstRow && Object.keys(this.#firstRow)) },
      parts,
    )
    this.#manifest = { ...manifest, partitionBy: settings.template.names }
    if (this.#stopped) throw new ExportError('ERR_ABORTED', 'sink', 'The export was stopped before its manifest was written')
    const committing = commitManifest(this.#store, manifestBytes(this.#manifest), this.#manifest, () => this.#stopped, partitionPartOf(settings.template))
    this.#committing = committing
    const outcome = await committing
    if (outcome.landed !== true) throw commitError(outcome)
    this.#location = outcome.location
    this.#leftBehind.push(...outcome.leftBehind)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopped = true
    this.#stop(error).then(
      () => callback(error),
      (cleanupError: unknown) => callback(error ?? toExportError(cleanupError, 'ERR_SINK', 'sink')),
    )
  }

  // Every partition's parts are removed unless the manifest has landed (or may have: then they
  // are kept and named in leftBehind).
  async #stop(error: Error | null): Promise<void> {
    await this.#saving // (it decides which partitions are kept, and writes the caller's store)
    for (const partition of this.#all) partition.writer.destroy(error ?? new Error('stopped'))
    // (Not events.once: it would reject with the error the writer is destroyed with.)
    await Promise.all(this.#all.map(({ writer }) => whenClosed(writer)))
    this.#nextFormat?.destroy()
    const outcome = await this.#committing?.catch(() => undefined)
    if (outcome?.landed === true) return
    if (outcome?.landed === 'unknown') {
      this.#leftBehind.push(...this.#all.flatMap((partition) => partition.writer.parts.map((part) => relativeName(part.location, ''))))
      return
    }
    const left: string[] = []
    // A partition stopped mid-way removed its own parts; one that had finished has them still (but
    // those a checkpoint holds). The latest first: the first partition's folders are emptied first.
    for (const { writer } of this.#all.slice(this.#kept).reverse()) left.push(...(writer.partsDone ? await writer.discardParts() : writer.leftBehind))
    this.#leftBehind.push(...left)
  }
}
