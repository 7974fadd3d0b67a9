// A streaming ZIP writer: what the XLSX format writes its workbook with (docs/xlsx.md has the
// measured choice). Streamed entries are deflated in blocks on every core (src/stages/deflate-blocks.ts:
// the main thread keeps encoding rows meanwhile) and followed by a data descriptor: nothing is
// sought back. ZIP64 records are written where a size, an offset or the entry count passes the
// 32-bit fields (APPNOTE 6.3.10, section 4.5.3).
import { availableParallelism } from 'node:os'
import { crc32, deflateRawSync } from 'node:zlib'
import { BlockDeflater } from '../../stages/deflate-blocks.js'

const MAX32 = 0xffffffff
const UTF8 = 0x0800 // general purpose flag bit 11: names are UTF-8
const DESCRIPTOR = 0x0008 // bit 3: sizes and CRC follow the data
const DEFLATE = 8

interface Entry {
  name: Buffer
  flags: number
  crc: number
  compressedSize: number
  size: number
  offset: number
  /** The local header carries a ZIP64 extra field (and the descriptor 8-byte sizes). */
  zip64Local: boolean
}

export interface ZipWriterOptions {
  /** zlib level, 0-9. Default 6. */
  level?: number
  /** Blocks of a streamed entry deflated at once on the thread pool. Default: `os.availableParallelism()`. */
  threads?: number
  /** Writes ZIP64 records for every entry and the end, whatever the sizes (tests read them back). */
  forceZip64?: boolean
  /** Modification time of every entry (stored in its UTC fields). Default: when the writer was made. */
  date?: Date
}

/**
 * Writes a ZIP archive as a sequence of chunks handed to `out`: whole entries with `addFile`,
 * streamed ones with `startEntry` / `write` / `endEntry`, then `finish()`. One entry streams at a
 * time. Memory: the compressor's window and queue, and 46 bytes plus the name per entry.
 */
export class ZipWriter {
  #out: (chunk: Buffer) => void
  #level: number
  #threads: number
  #forceZip64: boolean
  #time: number
  #date: number
  #offset = 0
  #entries: Entry[] = []
  #current: { entry: Entry; deflater: BlockDeflater } | undefined

  constructor(out: (chunk: Buffer) => void, options: ZipWriterOptions = {}) {
    this.#out = out
    this.#level = options.level ?? 6
    this.#threads = options.threads ?? availableParallelism()
    this.#forceZip64 = options.forceZip64 ?? false
    const d = options.date ?? new Date()
    // MS-DOS date and time (two-second resolution; the years 1980-2107).
    const year = Math.min(Math.max(d.getUTCFullYear(), 1980), 2107)
    this.#date = ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate()
    this.#time = (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1)
  }

  /** Bytes of the archive handed on so far. */
  get bytesWritten(): number {
    return this.#offset
  }

  /** Uncompressed bytes taken so far, over every entry. */
  get bytesIn(): number {
    return this.#entries.reduce((sum, entry) => sum + entry.size, 0) + (this.#current?.deflater.size ?? 0)
  }

  /** Bytes of the current streamed entry taken but not yet compressed and handed on. */
  get pendingBytes(): number {
    return this.#current?.deflater.pendingBytes ?? 0
  }

  /** A whole entry, compressed at once: its sizes go in its local header (no descriptor). */
  addFile(name: string, content: string | Buffer): void {
    if (this.#current) throw new Error(`ZIP entry ${this.#current.entry.name.toString()} is still open`)
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content
    const compressed = deflateRawSync(data, { level: this.#level })
    const entry: Entry = {
      name: Buffer.from(name, 'utf8'),
      flags: UTF8,
      crc: crc32(data),
      compressedSize: compressed.length,
      size: data.length,
      offset: this.#offset,
      zip64Local: false,
    }
    this.#entries.push(entry)
    this.#emit(this.#localHeader(entry))
    this.#emit(compressed)
  }

  /** Starts a streamed entry: `write` its bytes, then `endEntry()`. */
  startEntry(name: string): void {
    if (this.#current) throw new Error(`ZIP entry ${this.#current.entry.name.toString()} is still open`)
    const entry: Entry = {
      name: Buffer.from(name, 'utf8'),
      flags: UTF8 | DESCRIPTOR,
      crc: 0,
      compressedSize: 0,
      size: 0,
      offset: this.#offset,
      zip64Local: this.#forceZip64,
    }
    this.#entries.push(entry)
    this.#emit(this.#localHeader(entry))
    const deflater = new BlockDeflater(this.#level, this.#threads, (output) => {
      entry.compressedSize += output.length
      this.#emit(output)
    })
    this.#current = { entry, deflater }
  }

  /** Adds bytes to the streamed entry; false when the compressor's queue is full (await `drain()`). */
  write(chunk: Buffer): boolean {
    return this.#open().deflater.write(chunk)
  }

  /** Resolves when the compressor's queue has room again. */
  async drain(): Promise<void> {
    await this.#open().deflater.drain()
  }

  /** Ends the streamed entry: the rest compressed and handed on, then its data descriptor. */
  async endEntry(): Promise<void> {
    const { entry, deflater } = this.#open()
    await deflater.end()
    this.#current = undefined
    entry.crc = deflater.crc
    entry.size = deflater.size
    const wide = entry.zip64Local || entry.size > MAX32 || entry.compressedSize > MAX32
    const descriptor = Buffer.alloc(wide ? 24 : 16)
    descriptor.writeUInt32LE(0x08074b50, 0)
    descriptor.writeUInt32LE(entry.crc, 4)
    if (wide) {
      descriptor.writeBigUInt64LE(BigInt(entry.compressedSize), 8)
      descriptor.writeBigUInt64LE(BigInt(entry.size), 16)
    } else {
      descriptor.writeUInt32LE(entry.compressedSize, 8)
      descriptor.writeUInt32LE(entry.size, 12)
    }
    this.#emit(descriptor)
  }

  /** Writes the central directory and the end records: the archive is complete. */
  finish(): void {
    if (this.#current) throw new Error(`ZIP entry ${this.#current.entry.name.toString()} is still open`)
    const start = this.#offset
    for (const entry of this.#entries) this.#emit(this.#centralHeader(entry))
    const size = this.#offset - start
    const count = this.#entries.length
    const zip64 = this.#forceZip64 || count > 0xffff || size > MAX32 || start > MAX32
    if (zip64) {
      const end64 = Buffer.alloc(56 + 20)
      const at = this.#offset
      end64.writeUInt32LE(0x06064b50, 0) // ZIP64 end of central directory record
      end64.writeBigUInt64LE(44n, 4) // its size after this field
      end64.writeUInt16LE(45, 12) // version made by
      end64.writeUInt16LE(45, 14) // version needed
      end64.writeBigUInt64LE(BigInt(count), 24) // entries on this disk (disk numbers stay 0)
      end64.writeBigUInt64LE(BigInt(count), 32)
      end64.writeBigUInt64LE(BigInt(size), 40)
      end64.writeBigUInt64LE(BigInt(start), 48)
      end64.writeUInt32LE(0x07064b50, 56) // its locator
      end64.writeBigUInt64LE(BigInt(at), 64)
      end64.writeUInt32LE(1, 72) // one disk
      this.#emit(end64)
    }
    const end = Buffer.alloc(22)
    end.writeUInt32LE(0x06054b50, 0)
    end.writeUInt16LE(zip64 ? 0xffff : count, 8)
    end.writeUInt16LE(zip64 ? 0xffff : count, 10)
    end.writeUInt32LE(zip64 ? MAX32 : size, 12)
    end.writeUInt32LE(zip64 ? MAX32 : start, 16)
    this.#emit(end)
  }

  /** Forgets an open entry (the export failed or was aborted): blocks in flight finish unread. */
  destroy(): void {
    this.#current = undefined
  }

  #open() {
    if (!this.#current) throw new Error('No ZIP entry is open')
    return this.#current
  }

  #emit(chunk: Buffer): void {
    this.#offset += chunk.length
    this.#out(chunk)
  }

  #localHeader(entry: Entry): Buffer {
    const extra = entry.zip64Local ? 20 : 0
    const header = Buffer.alloc(30 + entry.name.length + extra)
    header.writeUInt32LE(0x04034b50, 0)
    header.writeUInt16LE(entry.zip64Local ? 45 : 20, 4)
    header.writeUInt16LE(entry.flags, 6)
    header.writeUInt16LE(DEFLATE, 8)
    header.writeUInt16LE(this.#time, 10)
    header.writeUInt16LE(this.#date, 12)
    const known = !(entry.flags & DESCRIPTOR)
    header.writeUInt32LE(known ? entry.crc : 0, 14)
    header.writeUInt32LE(entry.zip64Local ? MAX32 : known ? entry.compressedSize : 0, 18)
    header.writeUInt32LE(entry.zip64Local ? MAX32 : known ? entry.size : 0, 22)
    header.writeUInt16LE(entry.name.length, 26)
    header.writeUInt16LE(extra, 28)
    entry.name.copy(header, 30)
    if (entry.zip64Local) {
      // The ZIP64 extra field with both sizes, zero here: they follow in the data descriptor.
      header.writeUInt16LE(0x0001, 30 + entry.name.length)
      header.writeUInt16LE(16, 32 + entry.name.length)
    }
    return header
  }

  #centralHeader(entry: Entry): Buffer {
    const force = this.#forceZip64
    const bigSize = force || entry.size > MAX32
    const bigCompressed = force || entry.compressedSize > MAX32
    const bigOffset = force || entry.offset > MAX32
    const wide = [bigSize, bigCompressed, bigOffset].filter(Boolean).length
    const extra = wide ? 4 + 8 * wide : 0
    const header = Buffer.alloc(46 + entry.name.length + extra)
    header.writeUInt32LE(0x02014b50, 0)
    header.writeUInt16LE(wide ? 45 : 20, 4) // version made by (MS-DOS attributes)
    header.writeUInt16LE(wide ? 45 : 20, 6) // version needed
    header.writeUInt16LE(entry.flags, 8)
    header.writeUInt16LE(DEFLATE, 10)
    header.writeUInt16LE(this.#time, 12)
    header.writeUInt16LE(this.#date, 14)
    header.writeUInt32LE(entry.crc, 16)
    header.writeUInt32LE(bigCompressed ? MAX32 : entry.compressedSize, 20)
    header.writeUInt32LE(bigSize ? MAX32 : entry.size, 24)
    header.writeUInt16LE(entry.name.length, 28)
    header.writeUInt16LE(extra, 30)
    header.writeUInt32LE(bigOffset ? MAX32 : entry.offset, 42)
    entry.name.copy(header, 46)
    if (wide) {
      // ZIP64 extended information: only the fields that overflowed, in this order.
      let at = 46 + entry.name.length
      header.writeUInt16LE(0x0001, at)
      header.writeUInt16LE(8 * wide, at + 2)
      at += 4
      for (const [big, value] of [
        [bigSize, entry.size],
        [bigCompressed, entry.compressedSize],
        [bigOffset, entry.offset],
      ] as const) {
        if (!big) continue
        header.writeBigUInt64LE(BigInt(value), at)
        at += 8
      }
    }
    return header
  }
}
