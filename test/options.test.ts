// Option normalisers, tested without streams: each factory checks its options through one of these
// before it builds anything, so what they accept, refuse and default is what the factories do.
import { availableParallelism } from 'node:os'
import { describe, expect, it } from 'vitest'
import { ExportError } from '../src/index.js'
import { normalizeCsvOptions } from '../src/formats/csv.js'
import { normalizeParquetOptions } from '../src/formats/parquet/index.js'
import { normalizeXlsxOptions } from '../src/formats/xlsx/index.js'
import { normalizeProgressOptions } from '../src/stages/progress.js'
import { normalizeFileSinkOptions } from '../src/sinks/file.js'
import { normalizeS3SinkOptions } from '../src/sinks/s3/sink.js'

/** The ERR_INVALID_OPTION `run` throws: its message names the option. */
function refusal(run: () => unknown): ExportError {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(ExportError)
    expect((error as ExportError).code).toBe('ERR_INVALID_OPTION')
    return error as ExportError
  }
  throw new Error('expected ERR_INVALID_OPTION, nothing was thrown')
}

describe('normalizeCsvOptions', () => {
  it('fills every default and freezes the result', () => {
    const options = normalizeCsvOptions()
    expect(options).toEqual({
      header: true,
      delimiter: ',',
      quote: '"',
      eol: '\n',
      bom: false,
      nullValue: '',
      escapeFormulas: false,
      binary: 'base64',
      flatten: false,
      extraColumns: 'ignore',
      columns: undefined,
    })
    expect(Object.isFrozen(options)).toBe(true)
  })

  it('applies the excel preset, each part overridable', () => {
    expect(normalizeCsvOptions({ excel: true })).toMatchObject({ bom: true, eol: '\r\n', escapeFormulas: true })
    expect(normalizeCsvOptions({ excel: true, eol: '\n', bom: false })).toMatchObject({ bom: false, eol: '\n', escapeFormulas: true })
  })

  it('turns every columns form into frozen { key, header } pairs', () => {
    const expected = [
      { key: 'id', header: 'id' },
      { key: 'name', header: 'Name' },
    ]
    expect(normalizeCsvOptions({ columns: ['id', { key: 'name', header: 'Name' }] }).columns).toEqual(expected)
    const fromMap = normalizeCsvOptions({ columns: { id: 'id', name: 'Name' } }).columns
    expect(fromMap).toEqual(expected)
    expect(Object.isFrozen(fromMap) && Object.isFrozen(fromMap![0])).toBe(true)
  })

  it.each([
    [{ delimiter: '' }, 'delimiter'],
    [{ quote: 'ab' }, 'quote'],
    [{ delimiter: ';"' }, '`delimiter` and `quote`'],
    [{ eol: ',' }, '`eol` and `delimiter`'],
    [{ nullValue: null }, 'nullValue'],
    [{ binary: 'base32' }, 'binary'],
    [{ extraColumns: 'drop' }, 'extraColumns'],
    [{ columns: [] }, 'columns'],
    [{ columns: ['id', 7] }, 'columns[1]'],
    [{ columns: [{ key: 'id', header: 1 }] }, 'columns[0].header'],
    [{ excel: 'yes' }, 'excel'],
  ])('refuses %j, naming %s', (options, name) => {
    expect(refusal(() => normalizeCsvOptions(options as never)).message).toContain(name)
  })
})

describe('normalizeParquetOptions', () => {
  it('fills the defaults and copies what it keeps, frozen', () => {
    const schema = [{ name: 'amount', type: 'DECIMAL' as const, precision: 12, scale: 2 }]
    const options = normalizeParquetOptions({ schema })
    const workers = Math.max(1, Math.min(4, availableParallelism() - 1))
    expect(options).toEqual({ schema, rowGroupSize: 100_000, rowGroupBytes: 1_000_000, codec: 'SNAPPY', columns: undefined, workers })
    expect(Object.isFrozen(options) && Object.isFrozen(options.schema) && Object.isFrozen(options.schema![0])).toBe(true)
    schema[0]!.scale = 5
    expect(options.schema![0]!.scale).toBe(2)
  })

  it.each([
    [{ rowGroupSize: 0 }, 'rowGroupSize'],
    [{ rowGroupBytes: 1.5 }, 'rowGroupBytes'],
    [{ codec: 'LZ4' }, 'codec'],
    [{ columns: [] }, 'columns'],
    [{ workers: -1 }, 'workers'],
    [{ workers: 1.5 }, 'workers'],
    [{ workers: 65 }, 'workers'],
    [{ schema: [] }, 'schema'],
    [{ schema: [{ name: '', type: 'STRING' }] }, 'schema[0].name'],
    [
      {
        schema: [
          { name: 'a', type: 'STRING' },
          { name: 'b', type: 'FLOAT' },
        ],
      },
      'schema[1].type',
    ],
    [{ schema: [{ name: 'a', type: 'DECIMAL', precision: 77 }] }, 'schema[0].precision'],
    [{ schema: [{ name: 'a', type: 'DECIMAL', precision: 4, scale: 5 }] }, 'schema[0].scale'],
  ])('refuses %j, naming %s', (options, name) => {
    expect(refusal(() => normalizeParquetOptions(options as never)).message).toContain(name)
  })
})

describe('normalizeXlsxOptions', () => {
  it('fills the defaults (the Excel row limit under a header), frozen, and reads columns as csv() does', () => {
    const options = normalizeXlsxOptions({ columns: { id: 'ID' }, threads: 3 })
    expect(options).toEqual({
      header: true,
      sheetName: 'Sheet1',
      maxRowsPerSheet: 1_048_575,
      bigNumbers: 'text',
      longText: 'error',
      extraColumns: 'error',
      dateTimeFormat: 'yyyy-mm-dd hh:mm:ss',
      dateFormat: 'yyyy-mm-dd',
      binary: 'base64',
      compressionLevel: 6,
      threads: 3,
      columns: [{ key: 'id', header: 'ID' }],
    })
    expect(Object.isFrozen(options) && Object.isFrozen(options.columns) && Object.isFrozen(options.columns![0])).toBe(true)
    expect(normalizeXlsxOptions({ header: false }).maxRowsPerSheet).toBe(1_048_576)
  })

  it.each([
    [{ sheetName: 'a'.repeat(32) }, 'sheetName'],
    [{ sheetName: 'Q1/Q2' }, 'sheetName'],
    [{ sheetName: "'quoted'" }, 'sheetName'],
    [{ sheetName: 'History' }, 'sheetName'],
    [{ maxRowsPerSheet: 0 }, 'maxRowsPerSheet'],
    [{ maxRowsPerSheet: 1_048_576 }, 'maxRowsPerSheet'],
    [{ bigNumbers: 'round' }, 'bigNumbers'],
    [{ longText: 'drop' }, 'longText'],
    [{ extraColumns: 'keep' }, 'extraColumns'],
    [{ dateFormat: '' }, 'dateFormat'],
    [{ compressionLevel: 10 }, 'compressionLevel'],
    [{ threads: 0 }, 'threads'],
    [{ columns: [''] }, 'columns[0]'],
  ])('refuses %j naming %s', (options, name) => {
    expect(refusal(() => normalizeXlsxOptions(options as never)).message).toContain(name)
  })
})

describe('normalizeProgressOptions', () => {
  it('fills the defaults and keeps the readers it was given', () => {
    const rows = () => 3
    const options = normalizeProgressOptions({ rows })
    expect(options).toMatchObject({ intervalMs: 1000, objectMode: false, rows })
    expect(Object.isFrozen(options)).toBe(true)
  })

  it.each([
    [{ intervalMs: 2 ** 31 }, 'intervalMs'],
    [{ intervalMs: 0 }, 'intervalMs'],
    [{ totalRows: -1 }, 'totalRows'],
    [{ onProgress: 'log' }, 'onProgress'],
    [{ uploadedBytes: 5 }, 'uploadedBytes'],
  ])('refuses %j, naming %s', (options, name) => {
    expect(refusal(() => normalizeProgressOptions(options as never)).message).toContain(name)
  })
})

describe('normalizeFileSinkOptions', () => {
  it('defaults createDirectories to true and the checksum to CRC64NVME', () => {
    expect(normalizeFileSinkOptions({ path: 'out.csv' })).toEqual({ path: 'out.csv', createDirectories: true, checksum: 'CRC64NVME', overwrite: true })
  })

  it.each([
    [{ path: '' }, 'path'],
    [{ path: 'a', createDirectories: 1 }, 'createDirectories'],
    [{ path: 'a', checksum: 'MD5' }, 'checksum'],
    [{ path: 'a', checksum: true }, 'checksum'],
  ])('refuses %j, naming %s', (options, name) => {
    expect(refusal(() => normalizeFileSinkOptions(options as never)).message).toContain(name)
  })
})

describe('normalizeS3SinkOptions', () => {
  const client = { send: () => Promise.resolve({}) }

  it('resolves part size and queue size from the defaults or a memory budget', () => {
    expect(normalizeS3SinkOptions({ client, bucket: 'b', key: 'k' })).toMatchObject({ partSize: 8 * 2 ** 20, queueSize: 4 })
    // 64 MiB: four parts in flight plus the one being filled, 12.8 MiB each.
    expect(normalizeS3SinkOptions({ client, bucket: 'b', key: 'k', memoryBudget: 64 * 2 ** 20 })).toMatchObject({
      partSize: Math.floor((64 * 2 ** 20) / 5),
      queueSize: 4,
    })
  })

  it.each([
    [{ client: {}, bucket: 'b', key: 'k' }, 'client'],
    [{ client, bucket: '', key: 'k' }, 'bucket'],
    [{ client, bucket: 'b', key: 'k', partSize: 1024 }, 'partSize'],
    [{ client, bucket: 'b', key: 'k', memoryBudget: 2 ** 20 }, 'memoryBudget'],
    [{ client, bucket: 'b', key: 'k', memoryBudget: 2 ** 26, partSize: 2 ** 23 }, 'memoryBudget'],
    [{ client, bucket: 'b', key: 'k', contentType: 5 }, 'contentType'],
    [{ client, bucket: 'b', key: 'k', checksum: 'SHA256' }, 'checksum'],
    [{ client, bucket: 'b', key: 'k', sseCustomerKey: 'c2hvcnQga2V5' }, 'sseCustomerKey'],
    [{ client, bucket: 'b', key: 'k', sseCustomerKey: Buffer.alloc(16) }, 'sseCustomerKey'],
    [{ client, bucket: 'b', key: 'k', tags: { a: 1 } }, 'tags.a'],
    [{ client, bucket: 'b', key: 'k', objectLock: { mode: 'FOREVER', retainUntil: new Date() } }, 'objectLock.mode'],
    [{ client, bucket: 'b', key: 'k', objectLock: { mode: 'GOVERNANCE' } }, 'objectLock'],
    [{ client, bucket: 'b', key: 'k', objectLock: { legalHold: 'yes' } }, 'objectLock.legalHold'],
    [{ client, bucket: 'b', key: 'k', objectLock: { until: new Date() } }, 'until'],
    [{ client, bucket: 'b', key: 'k', overwrite: 'no' }, 'overwrite'],
    [{ client, bucket: 'b', key: 'k', overwrite: false, ifMatch: '"e"' }, 'ifMatch'],
  ])('refuses %j, naming %s', (options, name) => {
    expect(refusal(() => normalizeS3SinkOptions(options as never)).message).toContain(name)
  })

  it('never echoes an SSE-C key in its refusal', () => {
    const key = Buffer.from('0123456789abcdef0123456789abcde') // 31 bytes
    const { message } = refusal(() => normalizeS3SinkOptions({ client, bucket: 'b', key: 'k', sseCustomerKey: key.toString('base64') }))
    expect(message).toContain('31 bytes')
    expect(message).not.toContain(key.toString('base64').slice(0, 8))
  })
})
