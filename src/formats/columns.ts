// The `columns` option of the tabular formats (csv, xlsx): which row keys, in which order, under
// which headers.
import { invalidOption } from '../core/errors.js'

/** A column: the row key to read and the header to write. */
export interface Column {
  key: string
  header?: string
}

/** Columns in output order: names, `{ key, header }` objects (to rename), or a `{ key: header }` map. */
export type ColumnsOption = ReadonlyArray<string | Column> | Readonly<Record<string, string>>

/**
 * Checks a `columns` option and gives each column its key and header: ERR_INVALID_OPTION names a
 * bad entry. Undefined stays undefined (the columns come from the first row).
 */
export function normalizeColumns(columns: ColumnsOption | undefined): Array<Required<Column>> | undefined {
  if (columns === undefined) return undefined
  const list: Array<string | Column> = Array.isArray(columns)
    ? [...(columns as ReadonlyArray<string | Column>)]
    : typeof columns === 'object' && columns !== null
      ? Object.entries(columns as Readonly<Record<string, string>>).map(([key, header]) => ({ key, header }))
      : invalidOption('columns', 'an array of column names or a { key: header } object', columns)
  if (list.length === 0) invalidOption('columns', 'a non-empty list', columns)
  return list.map((column, i) => {
    if (typeof column === 'string' && column !== '') return { key: column, header: column }
    if (typeof column === 'object' && column !== null && typeof column.key === 'string' && column.key !== '') {
      if (column.header !== undefined && typeof column.header !== 'string') invalidOption(`columns[${i}].header`, 'a string', column.header)
      return { key: column.key, header: column.header ?? column.key }
    }
    return invalidOption(`columns[${i}]`, 'a column name or { key, header }', column)
  })
}
