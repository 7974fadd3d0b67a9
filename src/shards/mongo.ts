import { ExportError, toExportError } from '../core/errors.js'
import { checkObject, checkPositiveInteger, checkString } from '../core/options.js'
import { loadOptional } from '../core/optional.js'
import type { Row } from '../core/types.js'
import { checkPlainData, ShardedReadable, shardOptions, type ShardSource } from './readable.js'

export interface MongoShardedSourceOptions {
  /** The connection string; the coordinator and each shard open a client with it. */
  url: string
  /** MongoClient options (plain data: they are sent to the shards' threads). */
  clientOptions?: Record<string, unknown>
  /** Database name. Default: the one in `url`. */
  db?: string
  /** Collection name. */
  collection: string
  filter?: Record<string, unknown>
  projection?: Record<string, unknown>
  /** How many `_id` ranges, each read on a worker thread with its own client. Default: one per core. */
  shards?: number
  /** Documents per round trip of each shard's cursor. Default 1000. */
  batchSize?: number
  /** `_id`s sampled (`$sample`) to place the range edges. Default 10,000. */
  sampleSize?: number
  /** Fill `totalRows` for progress: `exact` (countDocuments(filter)) or `estimate` (estimatedDocumentCount()). */
  count?: 'exact' | 'estimate'
  /** See `postgresShardedSource`: each shard's output held in memory before the rest waits on disk. Default 8 MiB. */
  bufferBytes?: number
  /**
   * Folder under which those temp files are kept, in `stream-export-spill-<uid>/<pid>-<random>/`
   * (an export's removed when it ends, the process's when it exits; a killed process's by the next
   * sharded export under the same folder: docs/errors.md). Default: the system's temp folder.
   */
  tempDir?: string
}

/**
 * The range a value of `_id` sorts in: MongoDB compares values of one bracket only (`$gt: 5`
 * never matches a string), so every `_id` must be of one bracket for ranges to hold them all.
 */
function bracket(value: unknown): string {
  if (value === null || value === undefined) return 'null'
  if (typeof value === 'number' || typeof value === 'bigint') return 'number'
  if (typeof value === 'string') return 'string'
  if (typeof value === 'boolean') return 'bool'
  if (value instanceof Date) return 'date'
  const type = (value as { _bsontype?: string })._bsontype
  if (type === 'Long' || type === 'Double' || type === 'Int32' || type === 'Decimal128') return 'number'
  return type ?? 'object'
}

/**
 * Reads a MongoDB collection as `_id` ranges at once, each on a worker thread with its own client,
 * and hands the documents on in `_id` order: what `find(filter).sort({ _id: 1 })` gives. The
 * edges are quantiles of a `$sample` of the `_id`s. Each range is read by its own cursor: there is
 * no snapshot across ranges (see docs/shards.md). The shards send the documents as the driver
 * received them (raw BSON); they are decoded and encoded on this thread, so the shards overlap
 * the waiting (network, server), not the encoding.
 */
export function mongoShardedSource(options: MongoShardedSourceOptions): ShardedReadable {
  checkObject('options', options)
  const { url, clientOptions = {}, db, collection, filter = {}, projection, batchSize = 1000, sampleSize = 10_000 } = options
  const { shards, bufferBytes, tempDir, count } = shardOptions(options)
  checkString('url', url)
  checkObject('clientOptions', clientOptions)
  if (db !== undefined) checkString('db', db)
  checkString('collection', collection)
  checkObject('filter', filter)
  if (projection !== undefined) checkObject('projection', projection)
  checkPositiveInteger('batchSize', batchSize)
  checkPositiveInteger('sampleSize', sampleSize)
  checkPlainData('clientOptions', clientOptions, 'plain data')
  const { MongoClient, BSON } = loadOptional<typeof import('mongodb')>('mongodb', 'mongodb')
  const text = (value: unknown) => BSON.EJSON.stringify(value, { relaxed: false })

  return new ShardedReadable({
    encodes: false,
    bufferBytes,
    tempDir,
    decodeRows(payload) {
      const rows: Row[] = []
      for (let at = 0; at < payload.length;) {
        const length = payload.readInt32LE(at)
        rows.push(BSON.deserialize(payload.subarray(at, at + length)))
        at += length
      }
      return rows
    },
    async plan() {
      const client = new MongoClient(url, clientOptions)
      const release = () => client.close()
      try {
        await client.connect()
        const docs = client.db(db).collection(collection)
        const total = count ? (count === 'exact' ? docs.countDocuments(filter) : docs.estimatedDocumentCount()) : undefined
        // The first and the last _id: of one bracket, every _id between them is too.
        const end = (direction: 1 | -1) => docs.find(filter, { projection: { _id: 1 }, sort: { _id: direction }, limit: 1 }).toArray()
        const [[first], [last]] = await Promise.all([end(1), end(-1)])
        if (first && bracket(first._id) !== bracket(last!._id)) {
          throw new ExportError(
            'ERR_SOURCE',
            'source',
            `Cannot shard ${collection} by _id: its _id values are of several types (${bracket(first._id)} to ${bracket(last!._id)}), which MongoDB ranges do not span; use mongoSource`,
          )
        }
        const sample =
          shards === 1 || !first
            ? []
            : await docs.aggregate([{ $match: filter }, { $sample: { size: sampleSize } }, { $project: { _id: 1 } }, { $sort: { _id: 1 } }]).toArray()
        // The upper edges: the last _id of each of `shards` equal tiles of the sorted sample, each once.
        const edges: unknown[] = []
        for (let i = 1; i < shards; i++) {
          const id: unknown = sample[Math.ceil((i * sample.length) / shards) - 1]?._id
          if (id !== undefined && (edges.length === 0 || text(id) !== text(edges.at(-1)))) edges.push(id)
        }
        const sources: ShardSource[] = []
        for (let i = 0; i <= edges.length; i++) {
          const range: Record<string, unknown> = {}
          if (i > 0) range.$gt = edges[i - 1]
          if (i < edges.length) range.$lte = edges[i]
          sources.push({
            kind: 'mongo',
            url,
            clientOptions,
            db,
            collection,
            filter: text(Object.keys(range).length === 0 ? filter : { $and: [filter, { _id: range }] }),
            projection: projection === undefined ? undefined : text(projection),
            batchSize,
          })
        }
        return { sources, total, release }
      } catch (error) {
        await release()
        throw toExportError(error, 'ERR_SOURCE', 'source')
      }
    },
  })
}
