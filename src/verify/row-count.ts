// Rows counted in a stored part, where the format allows it exactly: JSON Lines (one line a row)
// and CSV (records as csv-parse reads them, the header told by the manifest's column names),
// plain or gzip (and zstd where Node has it). Other formats are not counted.
import { once } from 'node:events'
import { Writable, type Transform } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import * as zlib from 'node:zlib'
import { Parser } from 'csv-parse'
import type { Manifest } from '../core/types.js'

/** Takes a part's stored bytes as they are read; `rows()` once they all went in. */
export interface RowCounter {
  write(chunk: Buffer): Promise<void>
  rows(): Promise<number>
}

type Kind = Pick<Manifest, 'format' | 'compression' | 'columns'>

/** A counter for a part of this manifest, or `undefined` where the rows cannot be counted exactly. */
export function rowCounter({ format, compression, columns }: Kind): RowCounter | undefined {
  if (format !== 'jsonl' && format !== 'csv') return undefined
  const decompress = decompressor(compression)
  if (decompress === null) return undefined
  let rows = 0
  let header: boolean | undefined
  const counter =
    format === 'jsonl'
      ? new Writable({
          write(chunk: Buffer, _encoding, callback) {
            for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) rows++
            callback()
          },
        })
      : new Parser({ relax_column_count: true, bom: true, skip_empty_lines: true }).on('data', (record: string[]) => {
          // The first record is the header when it is the column names.
          if (header === undefined) {
            header = columns !== undefined && record.length === columns.length && record.every((name, i) => name === columns[i])
            if (header) return
          }
          rows++
        })
  const input: Writable = decompress ?? counter
  // Settles once every row is counted, or with the first error (bytes that do not decompress or parse).
  const done = decompress ? pipeline(decompress, counter) : finished(counter)
  let failed = false
  done.catch(() => (failed = true)) // the error is rows()'s to tell; writes stop meanwhile
  return {
    async write(chunk) {
      if (failed || input.write(chunk)) return
      await Promise.race([once(input, 'drain'), done]).catch(() => {})
    },
    async rows() {
      input.end()
      await done
      return rows
    },
  }
}

// The decompressor of a part (`undefined`: none needed; `null`: this Node cannot).
function decompressor(compression: Kind['compression']): Transform | undefined | null {
  if (compression === 'gzip') return zlib.createGunzip()
  if (compression === 'zstd') return (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress?.() ?? null
  return undefined
}
