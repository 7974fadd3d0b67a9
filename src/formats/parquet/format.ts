// The Parquet format stage: rows in (object mode, or batches), the bytes of one Parquet file out.
// Rows gather into a row group column by column; a full group is converted here (a misfit is
// ERR_FORMAT naming its row) and encoded on a worker thread (encoder.ts, pool.ts) while the next
// gathers; encoded groups are placed in order (file.ts), at most two per thread in flight.
import { Transform } from 'node:stream'
import { ExportError, describe } from '../../core/errors.js'
import { isRowBatch, WAITING_CHUNKS, type ColumnType, type Formatter, type Row } from '../../core/types.js'
import { converter, fitError, inferType, Misfit, roughSize, schemaElement } from './columns.js'
import { compressorsFor, encodeRowGroup, prepareColumn, type Compressors, type EncodedGroup, type GroupSetup, type ZstdCodec } from './encoder.js'
import { RowGroupFile } from './file.js'
import { RowGroupEncoder, threadsAvailable } from './pool.js'

export type ParquetCodec = 'SNAPPY' | 'ZSTD' | 'GZIP' | 'UNCOMPRESSED'

/** Parquet options with every default applied and every value checked: what `parquet()` writes with. */
export type NormalizedParquetOptions = Readonly<{
  schema: readonly ColumnType[] | undefined
  rowGroupSize: number
  rowGroupBytes: number
  codec: ParquetCodec
  columns: readonly string[] | undefined
  workers: number
}>

type InFlight = { group: Promise<EncodedGroup>; rows: number }

export class ParquetFormat extends Transform implements Formatter {
  readonly contentType = 'application/vnd.apache.parquet'
  readonly extension = 'parquet'
  readonly compressed = true
  readonly takesBatches = true
  readonly #options: NormalizedParquetOptions
  readonly #zstdCodec: ZstdCodec | undefined
  #compressors: Compressors = {}
  #sourceColumns: () => ColumnType[] | undefined = () => undefined
  #types: ColumnType[] | undefined
  #convert: Array<(value: unknown) => unknown> = []
  #setup: GroupSetup | undefined
  #file: RowGroupFile | undefined
  #pool: RowGroupEncoder | undefined
  readonly #inFlight: InFlight[] = []
  #keys: string[] | undefined
  #group: unknown[][] = []
  #groupStart = 0
  #rows = 0
  #pushedRows = 0
  #pushedBytes = 0
  #groupBytes = 0 // the values' rough sizes in the group being gathered
  #roughBytes = 0 // the values' rough sizes of every row taken, until a group is written
  #bytesPerRow: number | undefined // from the previous part of a split export
  #oneOfMany = false // a later part or partition: its files may come one after another

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
   * Estimated bytes of the rows taken but not yet written: at the bytes per row of the groups
   * written so far, or from the values' sizes before the first group is written.
   */
  get pendingBytes(): number {
    const pendingRows = this.#rows - this.#pushedRows
    if (this.#pushedRows > 0) return Math.round((pendingRows * this.#pushedBytes) / this.#pushedRows)
    return this.#bytesPerRow === undefined ? this.#roughBytes : Math.round(pendingRows * this.#bytesPerRow)
  }

  useSourceColumns(columns: () => ColumnType[] | undefined): void {
    this.#sourceColumns = columns
  }

  /** The same format for the next file of a split export, with the schema this one resolved. */
  nextPart(): ParquetFormat {
    const schema = this.#types ?? this.#options.schema
    const next = new ParquetFormat({ ...this.#options, schema, columns: schema ? undefined : this.#options.columns }, this.#zstdCodec)
    next.#oneOfMany = true
    // What a row took in this file is the best guess for the next one's first row group.
    if (this.#rows > 0) next.#bytesPerRow = this.#pushedBytes / this.#rows
    return next
  }

  override _construct(callback: (error?: Error | null) => void): void {
    compressorsFor(this.#options.codec, this.#zstdCodec).then((compressors) => {
      this.#compressors = compressors
      callback()
    }, callback)
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      if (isRowBatch(chunk)) for (const row of chunk.rows) this.#add(row)
      else this.#add(chunk)
    } catch (error) {
      return callback(error as Error)
    }
    // Two groups a thread in flight: one encoding, one waiting, while the next gathers.
    this.#place(2 * Math.max(1, this.#options.workers)).then(() => callback(), callback)
  }

  override _flush(callback: (error?: Error | null) => void): void {
    try {
      if (this.#rows > this.#groupStart || !this.#file) this.#endGroup(true)
    } catch (error) {
      return callback(error as Error)
    }
    this.#place(0)
      .then(() => {
        const json = new Map(this.#types!.flatMap((column, i) => (column.type === 'JSON' ? [[i, 'JSON'] as const] : [])))
        this.#file!.finish(json)
        this.#file = undefined // (a partitioned export keeps its finished formats until the manifest)
        return this.#pool?.close()
      })
      .then(() => callback(), callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    void this.#pool?.close()
    callback(error)
  }

  /** Adds a row to the row group, ending the group once it is full. */
  #add(row: unknown): void {
    if (typeof row !== 'object' || row === null)
      throw new ExportError('ERR_FORMAT', 'format', `Expected row ${this.#rows} to be an object, got ${describe(row)}`)
    const keys = (this.#keys ??= Object.keys(row))
    if (this.#group.length === 0) this.#group = keys.map(() => [])
    for (let i = 0; i < keys.length; i++) this.#group[i]!.push((row as Row)[keys[i]!]) // a group column per key
    const size = roughSize(row as Row, keys)
    this.#groupBytes += size
    if (this.#pushedRows === 0) this.#roughBytes += size
    this.#rows++
    if (this.#rows - this.#groupStart >= this.#options.rowGroupSize || this.#groupBytes >= this.#options.rowGroupBytes) this.#endGroup(false)
  }

  /** The file, once the first group tells the columns. */
  #start(): RowGroupFile {
    const keys = this.#keys
    let types = this.#options.schema ? [...this.#options.schema] : this.#sourceColumns()?.filter((c) => keys === undefined || keys.includes(c.name))
    if (types && keys) types = keys.map((k) => types!.find((c) => c.name === k) ?? { name: k, type: 'STRING' })
    types ??= (keys ?? []).map((name, i) => inferType(name, this.#group[i] ?? []))
    this.#types = types
    this.#keys = types.map((c) => c.name)
    this.#convert = types.map(converter)
    this.#setup = { schema: [{ name: 'root', num_children: types.length }, ...types.map(schemaElement)], codec: this.#options.codec }
    return new RowGroupFile(this.#setup, this.#compressors, (bytes) => {
      this.#pushedBytes += bytes.length
      this.push(bytes)
    })
  }

  /** Converts the gathered group and sends it to be encoded, on the threads or here. */
  #endGroup(last: boolean): void {
    this.#file ??= this.#start()
    const groupStart = this.#groupStart
    const rows = this.#rows - groupStart
    const columnData = this.#types!.map((column, i) => prepareColumn(this.#setup!.schema[i + 1], column.name, this.#converted(column, i, groupStart)))
    this.#group = []
    this.#groupStart = this.#rows
    this.#groupBytes = 0
    if (rows === 0 || this.#types!.length === 0) return // rows of no columns: a file of no group, as the writer makes
    const job = { columnData, rows }
    let group: Promise<EncodedGroup>
    // A file of one group is encoded here, unless it is one of many (a partition's: the threads
    // encode it while the next partition's rows gather).
    if (this.#options.workers === 0 || (last && !this.#pool && !this.#oneOfMany) || (!this.#pool && !threadsAvailable())) {
      group = Promise.resolve(encodeRowGroup(this.#setup!, this.#compressors, job)) // an error throws to the caller
    } else {
      this.#pool ??= new RowGroupEncoder(this.#setup!, this.#options.workers)
      group = this.#pool.encode(job)
    }
    group.catch(() => {}) // handled in order by #place
    this.#inFlight.push({ group, rows })
  }

  /** The values of column `i` of the gathered group as the writer stores them. */
  #converted(column: ColumnType, i: number, groupStart: number): unknown[] {
    const convert = this.#convert[i]!
    return (this.#group[i] ?? []).map((value, r) => {
      if (value === null || value === undefined) {
        if (column.nullable === false) throw fitError(groupStart + r, column, value, 'a value (the column is not nullable)')
        return null
      }
      try {
        return convert(value)
      } catch (error) {
        if (error instanceof Misfit) throw fitError(groupStart + r, column, value, error.message)
        throw error
      }
    })
  }

  /** Writes encoded groups in order until at most `max` are in flight. */
  async #place(max: number): Promise<void> {
    while (this.#inFlight.length > max && !this.destroyed) {
      const { group, rows } = this.#inFlight[0]!
      const encoded = await group
      this.#inFlight.shift()
      this.#file!.append(encoded, rows)
      this.#pushedRows += rows
    }
  }
}
