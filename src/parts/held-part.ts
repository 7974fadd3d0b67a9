// A small part written whole. A partition's rows are encoded as they come and held as bytes; a
// partition that ends before HOLD_BYTES is compressed and stored in one go, without the format,
// progress, compression, SHA-256 and sink stages a part otherwise runs through its own pipeline
// (with a thousand partitions those cost more than the rows). One that grows past it gets its
// stages, its bytes going out first (TextFormat.unhold): no row is encoded twice.
import { createHash } from 'node:crypto'
import { finished } from 'node:stream/promises'
import { STAGE_CODES, toExportError, type ExportStage } from '../core/errors.js'
import type { Row, Sink } from '../core/types.js'
import type { Compression, Format } from './part.js'
import type { SplitOptions } from './split-options.js'

/** Bytes a part holds before it gets its stages (about one compression block). */
export const HOLD_BYTES = 256 * 1024
// Text is turned into bytes in pieces of this many characters: a partition's text held as one
// string would be a tree of thousands of pieces that outlives young-generation collections.
const PIECE_CHARS = 16 * 1024

/** A format that encodes ahead of its stream (the text formats: see TextFormat.encodeHeld). */
export type HoldingFormat = Format & { encodeHeld(rows: readonly unknown[]): string; unhold(bytes: Buffer): void; endText(): string }

/** The held part of a writer with these options, if it can hold one: a partition's one part, of a text format. */
export function heldPartOf(options: { commits?: boolean; limits: SplitOptions; transforms: unknown[]; format: Format }): HeldPart | undefined {
  const { commits, limits, transforms, format } = options
  const holds = commits === false && limits.rows === undefined && limits.bytes === undefined && transforms.length === 0
  return holds && typeof (format as Partial<HoldingFormat>).encodeHeld === 'function' ? new HeldPart(format as HoldingFormat) : undefined
}

/** The rows of a part held as bytes, and their keys. */
export class HeldPart {
  rows = 0
  firstKey: unknown
  lastKey: unknown
  #pieces: Buffer[] = []
  #bytes = 0
  #text = ''

  constructor(readonly format: HoldingFormat) {}

  /** Encodes rows (ERR_FORMAT as the format's stream would); true once the part is past HOLD_BYTES. */
  add(rows: readonly Row[], keyOf: ((row: Row) => unknown) | undefined): boolean {
    this.#text += this.format.encodeHeld(rows)
    if (keyOf) {
      if (this.rows === 0) this.firstKey = keyOf(rows[0]!)
      this.lastKey = keyOf(rows.at(-1)!)
    }
    this.rows += rows.length
    if (this.#text.length >= PIECE_CHARS) this.#piece()
    return this.#bytes >= HOLD_BYTES
  }

  /** The part grew: `part` (its stages) takes over, the bytes held going out first. */
  handOver(part: { rows: number; firstKey: unknown; lastKey: unknown }): void {
    this.#piece()
    this.format.unhold(Buffer.concat(this.#pieces, this.#bytes))
    this.#pieces = []
    Object.assign(part, { rows: this.rows, firstKey: this.firstKey, lastKey: this.lastKey })
  }

  /** Stores the bytes and the format's end, compressed, through `sink`: the part as the manifest lists it, and its bytes before compression. */
  async write(
    sink: Sink<object>,
    compression: { stage: () => Compression; name: ExportStage } | undefined,
  ): Promise<{ rows: number; bytes: number; uncompressed: number; sha256: string; firstKey: unknown; lastKey: unknown }> {
    this.#text += this.format.endText()
    this.#piece()
    const bytes = Buffer.concat(this.#pieces, this.#bytes)
    this.#pieces = []
    const stored = compression ? await compressWhole(compression.stage(), bytes, compression.name) : bytes
    sink.end(stored)
    await finished(sink).catch((error: unknown) => {
      throw toExportError(error, 'ERR_SINK', 'sink')
    })
    const { rows, firstKey, lastKey } = this
    return { rows, firstKey, lastKey, bytes: stored.length, uncompressed: bytes.length, sha256: createHash('sha256').update(stored).digest('hex') }
  }

  #piece(): void {
    if (this.#text === '') return
    const piece = Buffer.from(this.#text, 'utf8')
    this.#text = ''
    this.#pieces.push(piece)
    this.#bytes += piece.length
  }
}

async function compressWhole(stage: Compression, input: Buffer, name: ExportStage): Promise<Buffer> {
  const chunks: Buffer[] = []
  stage.on('data', (chunk: Buffer) => chunks.push(chunk))
  stage.end(input)
  await finished(stage).catch((error: unknown) => {
    throw toExportError(error, STAGE_CODES[name], name)
  })
  return Buffer.concat(chunks)
}
