import { createFormatter } from './formatter.js'
import { jsonEncoder, type JsonOptions } from './values.js'
import type { Formatter } from '../core/types.js'

/** JSON Lines format stage: one JSON object per line, `\n`-terminated. Zero rows: empty output. */
export function jsonl(options: JsonOptions = {}): Formatter {
  const encode = jsonEncoder(options)
  return createFormatter({
    contentType: 'application/x-ndjson',
    extension: 'jsonl',
    textEncoding: { kind: 'jsonl', binary: options.binary ?? 'base64' },
    encode: (row) => encode(row) + '\n',
    end: () => '',
  })
}
