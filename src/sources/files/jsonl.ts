import type { Readable } from 'node:stream'
import { Transform } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { ExportError, toExportError } from '../../core/errors.js'
import { checkObject, optionNames } from '../../core/options.js'
import { attachInput, checkFileInput, type FileInputOptions, type FileInputProgress } from './input.js'
import type { SourceExtras } from '../../core/types.js'

export type JsonlSourceOptions = FileInputOptions

/** A JSON Lines source: one value per line, with input progress in bytes. */
export type JsonlSource = Readable & SourceExtras & FileInputProgress

const JSONL_SOURCE_OPTION_NAMES = optionNames<JsonlSourceOptions>({ path: true, stream: true })

/**
 * Values of a JSON Lines file or byte stream, one per line (LF or CRLF; blank lines skipped);
 * gzip or zstd input is detected and decompressed on the fly. A line that is not valid JSON fails with
 * ERR_SOURCE naming its line number.
 */
export function jsonlSource(options: JsonlSourceOptions): JsonlSource {
  checkObject('options', options, JSONL_SOURCE_OPTION_NAMES)
  checkFileInput(options)
  const decoder = new StringDecoder('utf8')
  let rest = ''
  let line = 0

  const parseLines = (stream: Transform, text: string, final: boolean) => {
    const lines = (rest + text).split('\n')
    rest = final ? '' : lines.pop()!
    for (const raw of lines) {
      line++
      const trimmed = raw.endsWith('\r') ? raw.slice(0, -1) : raw
      if (trimmed.trim() === '') continue
      try {
        stream.push(JSON.parse(trimmed))
      } catch (error) {
        throw new ExportError('ERR_SOURCE', 'source', `Invalid JSON on line ${line}: ${(error as Error).message}`, { cause: error })
      }
    }
  }

  const parser = new Transform({
    readableObjectMode: true,
    transform(chunk: Buffer, _encoding, callback) {
      try {
        parseLines(this, decoder.write(chunk), false)
        callback()
      } catch (error) {
        callback(error as Error)
      }
    },
    flush(callback) {
      try {
        parseLines(this, decoder.end(), true)
        callback()
      } catch (error) {
        callback(error as Error)
      }
    },
    destroy(error, callback) {
      callback(error && toExportError(error, 'ERR_SOURCE', 'source'))
    },
  })
  return attachInput(options, parser)
}
