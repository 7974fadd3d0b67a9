// XLSX format: the public face of src/formats/xlsx/. The stage is workbook.ts (sheets streamed as
// ZIP entries, zip.ts), the cell values cells.ts, the options and Excel's limits options.ts.
import type { Formatter } from '../../core/types.js'
import { normalizeXlsxOptions, type XlsxOptions } from './options.js'
import { XlsxFormat } from './workbook.js'

export {
  XLSX_MAX_CELL_CHARS,
  XLSX_MAX_COLUMNS,
  XLSX_MAX_ROWS,
  checkSheetName,
  normalizeXlsxOptions,
  type NormalizedXlsxOptions,
  type XlsxOptions,
} from './options.js'
export { XlsxFormat, type SheetSummary, type XlsxInternals } from './workbook.js'
export { columnLetters, xmlText } from './cells.js'

/**
 * XLSX format stage: an Excel workbook streamed in constant memory, typed cells under the shared
 * value policy, a bold frozen header with an autofilter, and a new sheet at Excel's row limit.
 * Output is already compressed (a ZIP): no gzip stage after it.
 * @example exportStream({ source, format: xlsx({ sheetName: 'Statements' }), sink: fileSink({ path: 'statements.xlsx' }) })
 */
export function xlsx(options: XlsxOptions = {}): Formatter {
  return new XlsxFormat(normalizeXlsxOptions(options))
}
