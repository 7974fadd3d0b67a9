import { createFormatter } from './formatter.js'
import { jsonEncoder, type JsonOptions } from './values.js'
import type { Formatter } from '../core/types.js'

/** JSON array format stage: one valid JSON document for any row count; `[]` for zero rows. */
export function jsonArray(options: JsonOptions = {}): Formatter {
  const encode = jsonEncoder(options)
  return createFormatter({
    contentType: 'application/json',
    extension: 'json',
    encode: (row, index) => (index === 0 ? '[\n' : ',\n') + encode(row),
    end: (rowCount) => (rowCount === 0 ? '[]\n' : '\n]\n'),
  })
}
