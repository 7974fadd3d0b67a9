import { checkObject, checkOneOf } from '../options.js'
import { createFormatter } from './formatter.js'
import { jsonRowEncoder, type BinaryEncoding } from './values.js'
import type { Formatter } from '../types.js'

export interface JsonOptions {
  /** Encoding of Buffer / Uint8Array values. Default `base64`. */
  binary?: BinaryEncoding
}

/** Validates JSON format options and returns the row encoder applying the value policy. */
export function jsonEncoder(options: JsonOptions) {
  checkObject('options', options)
  const { binary = 'base64' } = options
  checkOneOf('binary', binary, ['base64', 'hex'] as const)
  return jsonRowEncoder(binary)
}

/** JSON Lines format stage: one JSON object per line, `\n`-terminated. Zero rows: empty output. */
export function jsonl(options: JsonOptions = {}): Formatter {
  const encode = jsonEncoder(options)
  return createFormatter({
    contentType: 'application/x-ndjson',
    extension: 'jsonl',
    encode: (row) => encode(row) + '\n',
    end: () => '',
  })
}
