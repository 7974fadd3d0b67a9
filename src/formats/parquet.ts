import { Transform } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { ByteWriter, ParquetWriter } from 'hyparquet-writer'
import { ExportError, describe, invalidOption } from '../core/errors.js'
import { loadOptional } from '../core/optional.js'
import { checkObject, checkOneOf, checkPositiveInteger, optionNames } from '../core/options.js'
import { bsonValue, jsonValue } from './values.js'
import { isRowBatch, WAITING_CHUNKS, type ColumnType, type Formatter, type Row } from '../core/types.js'

export type ParquetCodec = 'SNAPPY' | 'ZSTD' | 'GZIP' | 'UNCOMPRESSED'

export interface ParquetOptions {
  /** Column types. Default: from the source (Postgres field types), else inferred from the first row group. */
  schema?: ColumnType[]
  /** Rows per row group at most; one row group is held in memory at a time. Default 100,000. */
  rowGroupSize?: number
  /**
   * A row group also ends once its values reach about this many bytes (strings and bytes by their
   * length, other values as 8), so memory stays bounded whatever the row width (DuckDB's
   * ROW_GROUP_SIZE_BYTES idea). Default 1 MB (1,000,000): chosen by measurement, docs/parquet.md.
   */
  rowGroupBytes?: number
  /** Default `SNAPPY`. `ZSTD` needs the `zstd-codec` package. */
  codec?: ParquetCodec
  /** Columns to write, in order (a subset of the row keys). Default: the schema's, or the first row's keys. */
  columns?: string[]
}

const TYPES = ['BOOLEAN', 'INT32', 'INT64', 'DOUBLE', 'STRING', 'JSON', 'BYTE_ARRAY', 'TIMESTAMP', 'DATE', 'DECIMAL'] as const
const DAY_MS = 86_400_000
const encoder = new TextEncoder()

type BsonLike = { _bsontype?: string; toString(): string }
const bsonType = (value: unknown) => (typeof value === 'object' && value !== null ? (value as BsonLike)._bsontype : undefined)

/** The Parquet schema element of a column. */
function schemaElement(column: ColumnType) {
  const repetition_type = column.nullable === false ? 'REQUIRED' : 'OPTIONAL'
  const base = { name: column.name, repetition_type } as const
  switch (column.type) {
    case 'STRING':
      return { ...base, type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } }
    case 'JSON':
      // converted_type JSON is added just before the footer is written (see flush): set
      // earlier, the writer would JSON-encode our already encoded text a second time.
      return { ...base, type: 'BYTE_ARRAY', logical_type: { type: 'JSON' } }
    case 'TIMESTAMP':
      return column.utc === false
        ? { ...base, type: 'INT64', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: false, unit: 'MICROS' } }
        : { ...base, type: 'INT64', converted_type: 'TIMESTAMP_MICROS', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' } }
    case 'DATE':
      return { ...base, type: 'INT32', converted_type: 'DATE', logical_type: { type: 'DATE' } }
    case 'DECIMAL': {
      const { precision = 38, scale = 0 } = column
      const type_length = Math.ceil((precision * Math.log2(10) + 1) / 8)
      return {
        ...base,
        type: 'FIXED_LEN_BYTE_ARRAY',
        type_length,
        converted_type: 'DECIMAL',
        precision,
        scale,
        logical_type: { type: 'DECIMAL', precision, scale },
      }
    }
    default:
      return { ...base, type: column.type }
  }
}

const ISO = /^(-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d(?::\d\d)?)?$/
const DECIMAL_TEXT = /^([+-])?(\d*)(?:\.(\d*))?$/

/** A converter from a row value to what the writer stores; throws a message on a misfit. */
function converter(column: ColumnType): (value: unknown) => unknown {
  switch (column.type) {
    case 'BOOLEAN':
      return (v) => (typeof v === 'boolean' ? v : misfit('a boolean'))
    case 'INT32':
      return (v) => {
        const n = bsonType(v) === 'Int32' ? Number(v) : v
        return typeof n === 'number' && Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 ? n : misfit('a 32-bit integer')
      }
    case 'INT64':
      return (v) => {
        if (typeof v === 'bigint') return v
        if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v)
        if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v)
        if (bsonType(v) === 'Long') return BigInt((v as BsonLike).toString())
        return misfit('a 64-bit integer')
      }
    case 'DOUBLE':
      return (v) => {
        if (typeof v === 'number') return v
        if (bsonType(v) === 'Double' || bsonType(v) === 'Int32') return Number(v)
        return misfit('a number')
      }
    case 'STRING':
      return (v) => {
        if (typeof v === 'string') return v
        const text = typeof v === 'object' && v !== null ? bsonValue(v, 'base64') : undefined
        return typeof text === 'string' ? text : misfit('a string')
      }
    case 'JSON':
      return (v) => encoder.encode(jsonValue(v, 'base64') ?? 'null')
    case 'BYTE_ARRAY':
      return (v) => {
        if (v instanceof Uint8Array) return v
        if (bsonType(v) === 'Binary') return (v as { buffer: Uint8Array; position: number }).buffer.subarray(0, (v as { position: number }).position)
        return misfit('bytes (a Buffer or Uint8Array)')
      }
    case 'TIMESTAMP':
      return (v) => {
        if (v instanceof Date && !Number.isNaN(v.getTime())) return BigInt(v.getTime()) * 1000n
        const m = typeof v === 'string' ? ISO.exec(v) : null
        if (!m) return misfit('a Date or an ISO 8601 timestamp')
        const [, seconds, fraction = '', zone] = m
        const ms = Date.parse(`${seconds}.${fraction.slice(0, 3).padEnd(3, '0')}${zone ?? 'Z'}`)
        if (Number.isNaN(ms)) return misfit('a valid timestamp')
        return BigInt(ms) * 1000n + BigInt(fraction.slice(3, 6).padEnd(3, '0'))
      }
    case 'DATE':
      return (v) => {
        if (v instanceof Date && !Number.isNaN(v.getTime())) return Math.floor(v.getTime() / DAY_MS)
        const ms = typeof v === 'string' && /^\d{4}-\d\d-\d\d$/.test(v) ? Date.parse(`${v}T00:00:00Z`) : Number.NaN
        return Number.isNaN(ms) ? misfit('a Date or a YYYY-MM-DD date') : ms / DAY_MS
      }
    case 'DECIMAL': {
      const { precision = 38, scale = 0 } = column
      return (v) => {
        const text = typeof v === 'string' ? v : typeof v === 'bigint' || typeof v === 'number' || bsonType(v) === 'Decimal128' ? String(v) : undefined
        const m = text === undefined ? null : DECIMAL_TEXT.exec(text)
        if (!m || (m[2] === '' && (m[3] ?? '') === '')) return misfit(`a decimal(${precision},${scale})`)
        const [, sign = '', whole, fraction = ''] = m
        const kept = fraction.replace(/0+$/, '')
        if (kept.length > scale) return misfit(`at most ${scale} digits after the point (decimal(${precision},${scale}))`)
        const digits = (whole + fraction.padEnd(scale, '0').slice(0, scale)).replace(/^0+(?=\d)/, '')
        if (digits.length > precision) return misfit(`at most ${precision} digits (decimal(${precision},${scale}))`)
        return BigInt(sign + digits)
      }
    }
  }
}

/** About the bytes a row's values take in a file: their text or binary length, 8 for numbers. */
function roughSize(row: Row, keys: string[]): number {
  let size = 0
  for (const key of keys) {
    const value = row[key]
    size += typeof value === 'string' ? value.length : value instanceof Uint8Array ? value.length : 8
  }
  return size
}

class Misfit extends Error {}
function misfit(expected: string): never {
  throw new Misfit(expected)
}

/** Column type inferred from the first non-null value of a column. */
function inferType(name: string, values: unknown[]): ColumnType {
  const v = values.find((x) => x !== null && x !== undefined)
  const type = ((): ColumnType['type'] => {
    if (typeof v === 'string') return 'STRING'
    if (typeof v === 'number') return 'DOUBLE'
    if (typeof v === 'bigint') return 'INT64'
    if (typeof v === 'boolean') return 'BOOLEAN'
    if (v instanceof Date) return 'TIMESTAMP'
    if (v instanceof Uint8Array) return 'BYTE_ARRAY'
    switch (bsonType(v)) {
      case 'Long':
        return 'INT64'
      case 'Int32':
        return 'INT32'
      case 'Double':
        return 'DOUBLE'
      case 'Binary':
        return (v as { sub_type?: number }).sub_type === 4 ? 'STRING' : 'BYTE_ARRAY'
      case 'ObjectId':
      case 'Decimal128':
        return 'STRING' // exact text: a Decimal128 has no fixed precision and scale
    }
    return v === undefined ? 'STRING' : 'JSON'
  })()
  return { name, type }
}

/** A ByteWriter that hands its bytes on after each row group (and every ~1 MB) instead of keeping the file. */
class StreamingWriter extends ByteWriter {
  constructor(private readonly emit: (bytes: Buffer) => void) {
    super(1024 * 1024)
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
  override finish(): void {
    this.flush()
  }
}

/** Parquet options with every default applied and every value checked: what `parquet()` writes with. */
export type NormalizedParquetOptions = Readonly<{
  schema: readonly ColumnType[] | undefined
  rowGroupSize: number
  rowGroupBytes: number
  codec: ParquetCodec
  columns: readonly string[] | undefined
}>

const PARQUET_OPTION_NAMES = optionNames<ParquetOptions>({ schema: true, rowGroupSize: true, rowGroupBytes: true, codec: true, columns: true })

/**
 * Checks Parquet options and applies the defaults, without building a stream: ERR_INVALID_OPTION
 * names the first bad option (down to `schema[2].precision`). The result is frozen.
 */
export function normalizeParquetOptions(options: ParquetOptions = {}): NormalizedParquetOptions {
  checkObject('options', options, PARQUET_OPTION_NAMES)
  const { schema, rowGroupSize = 100_000, rowGroupBytes = DEFAULT_ROW_GROUP_BYTES, codec = 'SNAPPY', columns } = options
  checkPositiveInteger('rowGroupSize', rowGroupSize)
  checkPositiveInteger('rowGroupBytes', rowGroupBytes)
  checkOneOf('codec', codec, ['SNAPPY', 'ZSTD', 'GZIP', 'UNCOMPRESSED'] as const)
  if (columns !== undefined && !(Array.isArray(columns) && columns.length > 0 && columns.every((n) => typeof n === 'string' && n !== ''))) {
    invalidOption('columns', 'a non-empty array of column names', columns)
  }
  if (schema !== undefined) {
    if (!Array.isArray(schema) || schema.length === 0) invalidOption('schema', 'a non-empty array of { name, type }', schema)
    schema.forEach((c, i) => {
      if (typeof c?.name !== 'string' || c.name === '') invalidOption(`schema[${i}].name`, 'a non-empty string', c?.name)
      checkOneOf(`schema[${i}].type`, c.type, TYPES)
      if (c.type === 'DECIMAL') {
        if (!Number.isInteger(c.precision) || c.precision! < 1 || c.precision! > 76)
          invalidOption(`schema[${i}].precision`, 'an integer from 1 to 76', c.precision)
        if (!Number.isInteger(c.scale ?? 0) || (c.scale ?? 0) < 0 || (c.scale ?? 0) > c.precision!)
          invalidOption(`schema[${i}].scale`, 'an integer from 0 to precision', c.scale)
      }
    })
  }
  return Object.freeze({
    schema: schema && Object.freeze(schema.map((c) => Object.freeze({ ...c }))),
    rowGroupSize,
    rowGroupBytes,
    codec,
    columns: columns && Object.freeze([...columns]),
  })
}

/** Bytes of values per row group by default (see `rowGroupBytes`). */
const DEFAULT_ROW_GROUP_BYTES = 1_000_000

type Zstd = { compress(input: Uint8Array, level?: number): Uint8Array }
type ZstdCodec = { ZstdCodec: { run(cb: (z: { Simple: new () => Zstd }) => void): void } }

/**
 * Parquet format stage (hyparquet-writer): rows are gathered into row groups of `rowGroupSize`
 * rows or `rowGroupBytes` of values, whichever comes first, each written and handed on before the next is gathered, so memory holds one row group.
 * Parquet compresses inside (SNAPPY by default): gzip on top is ERR_INVALID_OPTION.
 */
export function parquet(options: ParquetOptions = {}): Formatter {
  const normalized = normalizeParquetOptions(options)
  const zstdCodec = normalized.codec === 'ZSTD' ? loadOptional<ZstdCodec>('zstd-codec', 'zstd-codec') : undefined
  return new ParquetFormat(normalized, zstdCodec)
}

/** The Parquet format stage: rows (object mode) in, the bytes of one Parquet file out. */
class ParquetFormat extends Transform implements Formatter {
  readonly contentType = 'application/vnd.apache.parquet'
  readonly extension = 'parquet'
  readonly compressed = true
  readonly takesBatches = true
  readonly #options: NormalizedParquetOptions
  readonly #zstdCodec: ZstdCodec | undefined
  #zstd: Zstd | undefined
  #sourceColumns: () => ColumnType[] | undefined = () => undefined
  #types: ColumnType[] | undefined
  #convert: Array<(value: unknown) => unknown> = []
  #writer: ParquetWriter | undefined
  #elements: Array<ReturnType<typeof schemaElement>> = []
  #keys: string[] | undefined
  #group: unknown[][] = []
  #groupStart = 0
  #rows = 0
  #pushedBytes = 0
  #groupBytes = 0 // the values' rough sizes in the group being gathered
  #bytesPerRow: number | undefined // from the previous part of a split export

  constructor(options: NormalizedParquetOptions, zstdCodec: ZstdCodec | undefined) {
    super({ writableObjectMode: true, writableHighWaterMark: WAITING_CHUNKS })
    this.#options = options
    this.#zstdCodec = zstdCodec
    this.#keys = options.columns ? [...options.columns] : options.schema?.map((c) => c.name)
  }

  /** Rows taken so far. */
  get rows(): number {
    return this.#rows
  }

  /**
   * Estimated bytes of the rows gathered into the current row group: at the bytes per row of the
   * groups written so far, or from the values' sizes before the first group is written.
   */
  get pendingBytes(): number {
    const pendingRows = this.#rows - this.#groupStart
    if (this.#groupStart > 0) return Math.round((pendingRows * this.#pushedBytes) / this.#groupStart)
    return this.#bytesPerRow === undefined ? this.#groupBytes : Math.round(pendingRows * this.#bytesPerRow)
  }

  useSourceColumns(columns: () => ColumnType[] | undefined): void {
    this.#sourceColumns = columns
  }

  /** The same format for the next file of a split export, with the schema this one resolved. */
  nextPart(): ParquetFormat {
    const schema = this.#types ?? this.#options.schema
    const next = new ParquetFormat({ ...this.#options, schema, columns: schema ? undefined : this.#options.columns }, this.#zstdCodec)
    // What a row took in this file is the best guess for the next one's first row group.
    if (this.#rows > 0) next.#bytesPerRow = this.#pushedBytes / this.#rows
    return next
  }

  override _construct(callback: (error?: Error | null) => void): void {
    if (!this.#zstdCodec) return callback()
    this.#zstdCodec.ZstdCodec.run((z) => {
      this.#zstd = new z.Simple()
      callback()
    })
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      if (isRowBatch(chunk)) for (const row of chunk.rows) this.#add(row)
      else this.#add(chunk)
      callback()
    } catch (error) {
      callback(error as Error)
    }
  }

  /** Adds a row to the row group, writing the group once it is full. */
  #add(row: unknown): void {
    if (typeof row !== 'object' || row === null)
      throw new ExportError('ERR_FORMAT', 'format', `Expected row ${this.#rows} to be an object, got ${describe(row)}`)
    const keys = (this.#keys ??= Object.keys(row))
    if (this.#group.length === 0) this.#group = keys.map(() => [])
    for (let i = 0; i < keys.length; i++) this.#group[i]!.push((row as Row)[keys[i]!]) // a group column per key
    this.#groupBytes += roughSize(row as Row, keys)
    this.#rows++
    if (this.#rows - this.#groupStart >= this.#options.rowGroupSize || this.#groupBytes >= this.#options.rowGroupBytes) this.#writeGroup()
  }

  override _flush(callback: (error?: Error | null) => void): void {
    try {
      if (this.#rows > this.#groupStart || !this.#writer) this.#writeGroup()
      this.#types!.forEach((column, i) => column.type === 'JSON' && Object.assign(this.#elements[i]!, { converted_type: 'JSON' }))
      void this.#writer!.finish() // synchronous with our StreamingWriter
      callback()
    } catch (error) {
      callback(error as Error)
    }
  }

  #start(): ParquetWriter {
    const { schema, codec } = this.#options
    const keys = this.#keys
    let types = schema ? [...schema] : this.#sourceColumns()?.filter((c) => keys === undefined || keys.includes(c.name))
    if (types && keys) types = keys.map((k) => types!.find((c) => c.name === k) ?? { name: k, type: 'STRING' })
    types ??= (keys ?? []).map((name, i) => inferType(name, this.#group[i] ?? []))
    this.#types = types
    this.#keys = types.map((c) => c.name)
    this.#convert = types.map(converter)
    this.#elements = types.map(schemaElement)
    return new ParquetWriter({
      writer: new StreamingWriter((bytes) => {
        this.#pushedBytes += bytes.length
        this.push(bytes)
      }),
      schema: [{ name: 'root', num_children: types.length }, ...this.#elements] as never,
      codec,
      compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gzipSync(input)), ZSTD: (input: Uint8Array) => this.#zstd!.compress(input, 3) },
      createdBy: 'stream-export',
    })
  }

  #writeGroup(): void {
    const writer = (this.#writer ??= this.#start())
    const groupStart = this.#groupStart
    const count = this.#rows - groupStart
    const columnData = this.#types!.map((column, i) => {
      const values = this.#group[i] ?? []
      const data = values.map((value, r) => {
        if (value === null || value === undefined) {
          if (column.nullable === false) throw fitError(groupStart + r, column, value, 'a value (the column is not nullable)')
          return null
        }
        try {
          return this.#convert[i]!(value)
        } catch (error) {
          if (error instanceof Misfit) throw fitError(groupStart + r, column, value, error.message)
          throw error
        }
      })
      return { name: column.name, data }
    })
    if (count > 0) void writer.write({ columnData, rowGroupSize: count }) // synchronous with our StreamingWriter
    this.#group = []
    this.#groupStart = this.#rows
    this.#groupBytes = 0
  }
}

function fitError(row: number, column: ColumnType, value: unknown, expected: string): ExportError {
  return new ExportError(
    'ERR_FORMAT',
    'format',
    `Row ${row}, column ${JSON.stringify(column.name)} (${column.type}): expected ${expected}, got ${describe(value)}`,
  )
}
