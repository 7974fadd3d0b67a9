// One workbook of several sheets, each from its own source: the sources are read one after
// another, each sheet's rows behind a SheetStart, through one XLSX format stage and one
// exportStream() — so a workbook has the same sinks, progress, abort and commit point as any export.
import { Readable } from 'node:stream'
import { ExportError, invalidOption, toExportError } from '../core/errors.js'
import { checkObject, optionNames } from '../core/options.js'
import { destroyAll } from '../core/streams.js'
import { SHEET_START, type Location, type SheetStart, type SourceExtras } from '../core/types.js'
import { normalizeColumns, type Column, type ColumnsOption } from '../formats/columns.js'
import { checkSheetName, normalizeXlsxOptions, XlsxFormat, type SheetSummary, type XlsxOptions } from '../formats/xlsx/index.js'
import { fromIterable, type RowIterable } from '../sources/iterable.js'
import { applyTransforms, checkTransforms, type RowTransform } from '../stages/map-rows.js'
import { exportStream } from './export-stream.js'
import type { ExportOptions, ExportResult } from './options.js'

/** One sheet of a workbook: its name, where its rows come from, and which columns it shows. */
export interface WorkbookSheet {
  /**
   * The sheet's name: 1-31 characters, none of `: \ / ? * [ ]`, not starting or ending with `'`,
   * not `History`, and no other sheet's (Excel ignores case). At Excel's row limit the sheet
   * continues as `Name (2)`, `Name (3)`... (a name no sheet was given).
   */
  name: string
  /**
   * The sheet's rows: any source of this library, a Readable of rows, an (async) iterable, or a
   * function that makes one when the sheet's turn comes. A function keeps one connection busy at a
   * time: `postgresSource()` starts its query (and takes its connection) as soon as it is made.
   */
  source: SheetSource | (() => SheetSource)
  /** The sheet's columns, as `xlsx({ columns })` takes them. Default: its first row's keys. */
  columns?: ColumnsOption
  /** Row functions for this sheet's rows, as `exportStream({ transform })` takes them (`index` counts the sheet's rows). */
  transform?: RowTransform | RowTransform[]
}

/** What a sheet's rows come from. */
export type SheetSource = (Readable & SourceExtras) | RowIterable

/** `exportWorkbook()`'s options: `exportStream()`'s, with `sheets` for the source and the format. */
export interface WorkbookOptions<L extends object = Location> extends Omit<
  ExportOptions<L>,
  'source' | 'format' | 'transform' | 'gzip' | 'compression' | 'split' | 'partitionBy'
> {
  /** The sheets, in the workbook's order (at least one). */
  sheets: WorkbookSheet[]
  /** The XLSX options every sheet is written with (`xlsx()`'s, but `sheetName` and `columns`, which each sheet has). */
  xlsx?: Omit<XlsxOptions, 'sheetName' | 'columns'>
}

/** What a workbook export did: `exportStream()`'s result, and each sheet's rows and the sheets they fill. */
export interface WorkbookResult<L extends object = Location> extends ExportResult<L> {
  sheets: SheetSummary[]
}

const WORKBOOK_OPTION_NAMES = optionNames<WorkbookOptions>({
  sheets: true,
  xlsx: true,
  sink: true,
  onProgress: true,
  progressIntervalMs: true,
  totalRows: true,
  signal: true,
  maxRowsPerSecond: true,
  maxBytesPerSecond: true,
  logger: true,
})
const SHEET_OPTION_NAMES = optionNames<WorkbookSheet>({ name: true, source: true, columns: true, transform: true })

/** A sheet checked: its source as a stream (or what makes it), its columns and row functions normalized. */
interface SheetInput {
  name: string
  source: (Readable & SourceExtras) | (() => SheetSource)
  columns: Array<Required<Column>> | undefined
  transforms: RowTransform[] | undefined
}

/**
 * Exports one XLSX workbook of several sheets, each from its own source (a summary and its detail
 * queries), in constant memory: the sources are read one after another, each sheet written as its
 * rows come, with its own columns, header and widths, continued on a new sheet at Excel's row
 * limit. Everything else is `exportStream()`'s: sinks, progress (the rows of every sheet), abort,
 * the commit point. Bad options are ERR_INVALID_OPTION before any source is read.
 * @example
 * await exportWorkbook({
 *   sheets: [
 *     { name: 'Summary', source: postgresSource({ pool, text: 'SELECT customer, sum(amount) AS total FROM statements GROUP BY 1' }) },
 *     { name: 'Statements', source: postgresSource({ pool, text: 'SELECT * FROM statements ORDER BY id' }) },
 *   ],
 *   sink: fileSink({ path: 'statements.xlsx' }),
 * })
 */
export async function exportWorkbook<L extends object = Location>(options: WorkbookOptions<L>): Promise<WorkbookResult<L>> {
  let source: SheetsSource
  let format: XlsxFormat
  let rest: Omit<WorkbookOptions<L>, 'sheets' | 'xlsx'>
  try {
    checkObject('options', options, WORKBOOK_OPTION_NAMES)
    const { sheets, xlsx = {}, ...others } = options
    rest = others
    source = new SheetsSource(checkSheets(sheets))
    checkObject('xlsx', xlsx)
    for (const key of ['sheetName', 'columns'] as const) {
      if (key in xlsx) invalidOption(`xlsx.${key}`, 'undefined: each sheet has its own (`sheets[i].name`, `sheets[i].columns`)', (xlsx as XlsxOptions)[key])
    }
    format = new XlsxFormat(normalizeXlsxOptions(xlsx))
  } catch (error) {
    // Nothing was read: the sources that hold a connection give it back, and the sink is closed (as exportStream does).
    const { sheets, sink } = (options ?? {}) as Partial<WorkbookOptions>
    destroyAll([...(Array.isArray(sheets) ? sheets.map((sheet) => (sheet as Partial<WorkbookSheet> | null)?.source) : []), sink])
    throw toExportError(error, 'ERR_INVALID_OPTION', 'options')
  }
  const result = await exportStream<L>({ ...rest, source, format })
  return { ...result, sheets: format.sheetSummaries }
}

function checkSheets(sheets: unknown): SheetInput[] {
  if (!Array.isArray(sheets) || sheets.length === 0) invalidOption('sheets', 'a non-empty array of { name, source, columns?, transform? }', sheets)
  const names = new Map<string, string>()
  return (sheets as unknown[]).map((sheet, i) => {
    checkObject(`sheets[${i}]`, sheet, SHEET_OPTION_NAMES)
    const { name, source, columns, transform } = sheet as WorkbookSheet
    checkSheetName(name, `sheets[${i}].name`)
    const same = names.get(name.toLowerCase())
    if (same !== undefined) invalidOption(`sheets[${i}].name`, `a name no other sheet has (${same}; Excel ignores case)`, name)
    names.set(name.toLowerCase(), `sheets[${i}] is ${JSON.stringify(name)}`)
    if (typeof source !== 'function' && (typeof source !== 'object' || source === null))
      invalidOption(`sheets[${i}].source`, 'a source of rows (a Readable, an iterable, or a function making one)', source)
    const stream = typeof source === 'function' ? source : sourceOf(source, i)
    let normalized: Array<Required<Column>> | undefined
    try {
      normalized = normalizeColumns(columns)
    } catch (error) {
      invalidOption(`sheets[${i}].columns`, (error as ExportError).message, columns)
    }
    return { name, source: stream, columns: normalized, transforms: transform === undefined ? undefined : checkTransforms(transform, `sheets[${i}].transform`) }
  })
}

/** A sheet's failure, named for it, with its own code (ERR_SOURCE, ERR_TRANSFORM, an option refused). */
function sheetError(name: string, error: unknown): ExportError {
  const { code, stage } = error instanceof ExportError ? error : { code: 'ERR_SOURCE' as const, stage: 'source' as const }
  return new ExportError(code, stage, `Sheet ${JSON.stringify(name)}: ${(error as Error)?.message ?? String(error)}`, { cause: error })
}

/** A sheet's source as a stream of rows: ERR_INVALID_OPTION for one of formatted bytes (COPY), or no rows at all. */
function sourceOf(source: SheetSource, i: number): Readable & SourceExtras {
  let stream: Readable & SourceExtras
  try {
    stream = source instanceof Readable ? source : fromIterable(source)
  } catch (error) {
    return invalidOption(`sheets[${i}].source`, `a source of rows (${(error as Error).message})`, source)
  }
  if (stream.preformatted) {
    stream.destroy()
    invalidOption(`sheets[${i}].source`, 'a source of rows, not of formatted bytes (COPY)', source)
  }
  return stream
}

/**
 * The rows of every sheet, one source after another, each sheet's behind its SheetStart. A source
 * starts when the one before it has ended; an abort destroys every source (an idle one holds a
 * connection until then).
 */
class SheetsSource extends Readable implements SourceExtras {
  readonly #sheets: SheetInput[]
  #started = false
  #wake: (() => void) | undefined

  constructor(sheets: SheetInput[]) {
    super({ objectMode: true, highWaterMark: 16 })
    this.#sheets = sheets
    for (const { name, source } of sheets) if (source instanceof Readable) this.#watch(name, source)
  }

  /**
   * A source that fails before its sheet's turn (a refused connection) fails the workbook then,
   * named for its sheet: nothing else listens to it yet.
   */
  #watch(name: string, source: Readable): void {
    source.on('error', (error) => this.destroy(sheetError(name, error)))
  }

  /** The rows of every sheet, when every source is made already and counts its own. */
  async countRows(): Promise<number | undefined> {
    const sources = this.#sheets.map((sheet) => sheet.source)
    if (!sources.every((source) => source instanceof Readable && source.countRows)) return undefined
    const counts = await Promise.all(sources.map((source) => (source as SourceExtras).countRows!()))
    return counts.some((count) => count === undefined) ? undefined : counts.reduce((a, b) => a! + b!, 0)
  }

  override _read(): void {
    const wake = this.#wake
    this.#wake = undefined
    if (wake) return wake()
    if (this.#started) return
    this.#started = true
    this.#run().then(
      () => this.push(null),
      (error: unknown) => this.destroy(error as Error),
    )
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // (Without an error: a source nobody reads has no listener for one.)
    for (const { source } of this.#sheets) if (source instanceof Readable) source.destroy()
    callback(error)
  }

  async #run(): Promise<void> {
    const reserved = this.#sheets.map((sheet) => sheet.name)
    for (const [i, sheet] of this.#sheets.entries()) {
      const { name, columns, transforms } = sheet
      if (this.destroyed) return
      let index = 0
      try {
        // (Made here, kept on the sheet: an abort destroys it.)
        const source = typeof sheet.source === 'function' ? (sheet.source = this.#make(sheet.source, i)) : sheet.source
        const start: SheetStart = { [SHEET_START]: true, name, columns, columnTypes: () => source.columnTypes?.(), reserved }
        await this.#put(start)
        for await (const row of source as AsyncIterable<unknown>) {
          if (this.destroyed) return
          const out = transforms ? await applyTransforms(transforms, row, index++) : row
          if (out !== undefined) await this.#put(out)
        }
      } catch (error) {
        throw sheetError(name, error)
      }
    }
  }

  /** A sheet's source made now, by the function given for it. */
  #make(make: () => SheetSource, i: number): Readable & SourceExtras {
    const made = make() as unknown
    if (typeof (made as Partial<PromiseLike<unknown>> | null)?.then === 'function') {
      // (A source it resolves to would hold its connection: closed.)
      void Promise.resolve(made).then(
        (late) => late instanceof Readable && late.destroy(),
        () => {},
      )
      invalidOption(
        `sheets[${i}].source`,
        'a function returning a source of rows, not a promise (make the source at once: postgresSource() connects by itself)',
        made,
      )
    }
    if (typeof made !== 'object' || made === null) invalidOption(`sheets[${i}].source`, 'a function returning a source of rows', made)
    const source = sourceOf(made as SheetSource, i)
    this.#watch(this.#sheets[i]!.name, source)
    return source
  }

  /** Hands a chunk on; waits while the reader is full. */
  async #put(chunk: unknown): Promise<void> {
    if (!this.push(chunk)) await new Promise<void>((resolve) => (this.#wake = resolve))
  }
}
