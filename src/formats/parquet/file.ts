// The Parquet file around its row groups: hyparquet-writer's ParquetWriter writes the magic, the
// page indexes and the footer, and each row group encoded apart (encoder.ts, often on another
// thread) is placed after the previous one, its offsets moved to where it lands. The bytes are
// those of one ParquetWriter writing every group itself (a test holds them equal). This module and
// encoder.ts are the only ones that know hyparquet-writer's fields.
import { ByteWriter, ParquetWriter } from 'hyparquet-writer'
import { MAGIC_BYTES, type Compressors, type EncodedGroup, type GroupSetup } from './encoder.js'

/**
 * A ByteWriter that hands its bytes on (every ~1 MB and when asked) instead of keeping the file. It
 * starts small: most of what it writes itself is the footer (the groups are passed through).
 */
class StreamingWriter extends ByteWriter {
  constructor(private readonly emit: (bytes: Buffer) => void) {
    super(64 * 1024)
  }
  override ensure(size: number): void {
    if (this.index > 1024 * 1024) this.flush()
    super.ensure(size)
  }
  flush(): void {
    if (this.index === 0) return
    this.emit(Buffer.from(this.buffer.slice(0, this.index)))
    this.index = 0
  }
  /** Hands on bytes written elsewhere, as if appended here. */
  pass(bytes: Uint8Array): void {
    this.flush()
    this.emit(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    this.offset += bytes.byteLength
  }
  override finish(): void {
    this.flush()
  }
}

type ColumnChunk = { file_offset: bigint; meta_data?: { data_page_offset: bigint; dictionary_page_offset?: bigint } }
type PageIndexes = { offsetIndex?: { page_locations: Array<{ offset: bigint }> } }
type Internals = { row_groups: unknown[]; num_rows: bigint; pendingIndexes: unknown[]; schema: Array<Record<string, unknown>> }

export class RowGroupFile {
  readonly #writer: StreamingWriter
  readonly #parquet: ParquetWriter

  constructor(setup: GroupSetup, compressors: Compressors, emit: (bytes: Buffer) => void) {
    this.#writer = new StreamingWriter(emit)
    this.#parquet = new ParquetWriter({ writer: this.#writer, schema: setup.schema as never, codec: setup.codec, compressors, createdBy: 'stream-export' })
  }

  /** Places the next row group of `rows` rows. */
  append(group: EncodedGroup, rows: number): void {
    const shift = BigInt(this.#writer.offset - MAGIC_BYTES)
    const rowGroup = group.rowGroup as { columns: ColumnChunk[] }
    for (const chunk of rowGroup.columns) {
      chunk.file_offset += shift
      if (chunk.meta_data) {
        chunk.meta_data.data_page_offset += shift
        if (chunk.meta_data.dictionary_page_offset !== undefined) chunk.meta_data.dictionary_page_offset += shift
      }
    }
    // Each index's `chunk` is one of the columns above (the same object, also across threads).
    for (const { offsetIndex } of group.indexes as PageIndexes[]) for (const page of offsetIndex?.page_locations ?? []) page.offset += shift
    this.#writer.pass(group.bytes)
    const internals = this.#parquet as unknown as Internals
    internals.row_groups.push(rowGroup)
    internals.num_rows += BigInt(rows)
    internals.pendingIndexes.push(...group.indexes)
  }

  /**
   * Writes the page indexes and the footer. `converted` is set on schema elements now, not before:
   * set earlier, the writer would JSON-encode a JSON column's already encoded text a second time.
   */
  finish(converted: ReadonlyMap<number, string>): void {
    const { schema } = this.#parquet as unknown as Internals
    for (const [column, type] of converted) schema[column + 1]!.converted_type = type
    void this.#parquet.finish() // synchronous on a StreamingWriter
  }
}
