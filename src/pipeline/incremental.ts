import type { Readable } from 'node:stream'
import { ExportError, invalidOption } from '../core/errors.js'
import { EXPORT_OPTION_NAMES, exportStream, type ExportOptions, type ExportResult } from './export-stream.js'
import { checkFunction, checkObject, checkString, optionNames, type OptionNames } from '../core/options.js'
import type { Location, SourceExtras } from '../core/types.js'
import { saveAfterCommit, type WatermarkStore } from './watermark-store.js'

export interface IncrementalExportOptions<L extends object = Location, W = never> extends Omit<ExportOptions<L>, 'source'> {
  /** The feed's name: its watermark is stored under it (e.g. `orders-daily`). */
  name: string
  /** Where the watermark is kept between runs: `postgresWatermarkStore`, `redisWatermarkStore`, `fileWatermarkStore`. */
  store: WatermarkStore
  /**
   * The source of the rows after `after` (the stored watermark; undefined on the first run), e.g.
   * `(after) => postgresIncrementalSource({ pool, table: 'orders', orderBy: 'updated_at', after })`.
   */
  source: (after: W | undefined) => Readable & SourceExtras
}

// Checked before the store is loaded: a misspelt key (`gzp`) is refused before any I/O, not by
// exportStream once the watermark is loaded and the source made.
const OPTION_NAMES: OptionNames = new Set([
  ...EXPORT_OPTION_NAMES,
  ...optionNames<Pick<IncrementalExportOptions, 'name' | 'store'>>({ name: true, store: true }),
])

/**
 * One run of an incremental feed: loads the feed's watermark, exports the rows after it, and
 * stores the next watermark only once the export has committed (file renamed, upload completed,
 * manifest written). A run that fails stores nothing: the next exports the same rows and more. A
 * run that committed but could not store its watermark rejects with ERR_STATE: the next run
 * exports its rows again (at least once per file, never a row skipped). A stored watermark the
 * source refuses (postgresIncrementalSource: one of another server) rejects with ERR_STATE before
 * any output, the watermark kept. See docs/incremental.md.
 */
export async function incrementalExport<L extends object = Location, W = never>(options: IncrementalExportOptions<L, W>): Promise<ExportResult<L>> {
  checkObject('options', options, OPTION_NAMES)
  const { name, store, source, ...rest } = options
  checkString('name', name)
  if (typeof store?.load !== 'function' || typeof store.save !== 'function') invalidOption('store', 'a watermark store (load, save)', store)
  checkFunction('source', source)
  let after: unknown
  try {
    after = await store.load(name)
  } catch (error) {
    throw new ExportError('ERR_STATE', 'state', `Cannot load the watermark of ${JSON.stringify(name)}: ${(error as Error).message}`, { cause: error })
  }
  const rows = source(after as W | undefined)
  if (!('watermark' in rows)) {
    rows.destroy()
    invalidOption('source', 'a function returning an incremental source (one with a `watermark`, e.g. postgresIncrementalSource)', rows)
  }
  const result = await exportStream<L>({ ...rest, source: rows })
  await saveAfterCommit(store, name, result.watermark, result.location ? JSON.stringify(result.location) : 'in the sink')
  return result
}
