import type { Readable } from 'node:stream'
import { invalidOption, toExportError } from '../../core/errors.js'
import { checkBoolean, checkExactlyOne, checkObject, checkOneOf, checkPositiveInteger, optionNames } from '../../core/options.js'
import { fromIterable, fromPages } from '../iterable.js'
import { keysetPages, type KeysetReadable } from '../keyset-pages.js'
import type { SourceExtras } from '../../core/types.js'

export type Document = Record<string, unknown>

/** A FindCursor or AggregationCursor of the official driver (structural). */
export interface MongoCursorLike extends AsyncIterable<Document> {
  close(): Promise<void>
}

/** A FindCursor of the official driver (structural). */
export interface MongoFindCursorLike extends MongoCursorLike {
  toArray(): Promise<Document[]>
  /** The documents of the current driver batch not yet read (the cursor's toArray reads them so). */
  readBufferedDocuments(): Document[]
}

/** A Collection of the official driver (structural). */
export interface MongoCollectionLike {
  find(filter: Document, options: Document): MongoFindCursorLike
  countDocuments(filter: Document, options?: Document): Promise<number>
  estimatedDocumentCount(options?: Document): Promise<number>
}

export interface MongoSourceOptions {
  /** Any FindCursor or AggregationCursor; the source iterates and closes it. Give `cursor` or `collection`. */
  cursor?: MongoCursorLike
  /** A collection to read with `filter`, `projection`, `sort`. */
  collection?: MongoCollectionLike
  filter?: Document
  projection?: Document
  sort?: Document
  /** Documents per server round trip (cursor batch, or page in keyset mode). Default 1000. */
  batchSize?: number
  /** Fill `totalRows`: `exact` (countDocuments(filter)) or `estimate` (estimatedDocumentCount()). */
  count?: 'exact' | 'estimate'
  /**
   * Keep the cursor alive however long the export waits (the server otherwise kills an idle
   * cursor after ~10 minutes: CursorNotFound). Prefer `keyset`. Default `false`.
   */
  noCursorTimeout?: boolean
  /**
   * Read in pages of `_id > last` sorted by `_id` instead of one long-lived cursor: a slow
   * destination cannot make the cursor time out, and `checkpoint` resumes the export. Default `false`.
   */
  keyset?: boolean
  /** Keyset mode: resume after this `_id` (a `checkpoint`). */
  after?: unknown
  /**
   * The server's limit on the time its query may take (`maxTimeMS` of each find, and of the count):
   * a query over it fails with MaxTimeMSExpired (code 50), ERR_SOURCE. The server counts the time it
   * works on the cursor, not the time the export waits between batches. Read preference goes with
   * the collection you pass: `db.collection(name, { readPreference: 'secondaryPreferred' })`.
   * See docs/operations.md.
   */
  maxTimeMS?: number
}

/** A MongoDB source; in keyset mode it has a `checkpoint` (the last `_id` handed on). */
export type MongoSource = Readable & SourceExtras & Partial<Pick<KeysetReadable, 'checkpoint'>>

const MONGO_SOURCE_OPTION_NAMES = optionNames<MongoSourceOptions>({
  cursor: true,
  collection: true,
  filter: true,
  projection: true,
  sort: true,
  batchSize: true,
  count: true,
  noCursorTimeout: true,
  keyset: true,
  after: true,
  maxTimeMS: true,
})

/**
 * Documents of a MongoDB cursor or collection. Built on the cursor's async iterator, not
 * `cursor.stream()` (which can turn a server error into a normal end, truncating the export
 * silently); the cursor is closed (killCursors) on end, error and early destroy.
 */
export function mongoSource(options: MongoSourceOptions): MongoSource {
  checkObject('options', options, MONGO_SOURCE_OPTION_NAMES)
  const { cursor, collection, filter = {}, projection, sort, batchSize = 1000, count, noCursorTimeout = false, keyset = false, after, maxTimeMS } = options
  checkExactlyOne(options, ['cursor', 'collection'])
  if (cursor !== undefined) {
    if (typeof cursor?.[Symbol.asyncIterator] !== 'function' || typeof cursor.close !== 'function')
      invalidOption('cursor', 'a FindCursor or AggregationCursor', cursor)
    for (const name of ['filter', 'projection', 'sort', 'count', 'keyset', 'after', 'maxTimeMS'] as const) {
      if (options[name] !== undefined) invalidOption(name, 'undefined with `cursor` (set it on the cursor)', options[name])
    }
  }
  if (collection !== undefined && typeof collection?.find !== 'function') invalidOption('collection', 'a mongodb Collection', collection)
  checkObject('filter', filter)
  if (projection !== undefined) checkObject('projection', projection)
  if (sort !== undefined) checkObject('sort', sort)
  checkPositiveInteger('batchSize', batchSize)
  if (count !== undefined) checkOneOf('count', count, ['exact', 'estimate'] as const)
  checkBoolean('noCursorTimeout', noCursorTimeout)
  checkBoolean('keyset', keyset)
  if (maxTimeMS !== undefined) checkPositiveInteger('maxTimeMS', maxTimeMS)
  if (keyset && sort !== undefined) invalidOption('sort', 'undefined in keyset mode (pages are sorted by _id)', sort)
  if (after !== undefined && !keyset) invalidOption('after', 'given only with `keyset: true`', after)

  const fromAfter = (last: unknown) => (last === undefined ? filter : { $and: [filter, { _id: { $gt: last } }] })
  let stream: MongoSource
  if (keyset) {
    stream = keysetPages<Document>({
      batchSize,
      after,
      keyOf: (doc) => doc._id,
      // One short query per page: the cursor is exhausted by toArray, so none stays open.
      fetchPage: (last) => collection!.find(fromAfter(last), { projection, sort: { _id: 1 }, limit: batchSize, batchSize, maxTimeMS }).toArray(),
      release: async () => {},
    })
  } else {
    // A cursor of ours is read a driver batch at a time; a given one may map its documents, which
    // only its iterator applies: it is read one document at a time.
    stream = cursor
      ? fromIterable(documents(() => cursor))
      : fromPages(pages(() => collection!.find(filter, { projection, sort, batchSize, noCursorTimeout, maxTimeMS })))
  }
  if (count && collection) {
    stream.countRows = () => (count === 'exact' ? collection.countDocuments(fromAfter(after), { maxTimeMS }) : collection.estimatedDocumentCount({ maxTimeMS }))
  }
  return stream
}

async function* documents(open: () => MongoCursorLike): AsyncGenerator<Document> {
  const cursor = open()
  try {
    for await (const doc of cursor) yield doc
  } catch (error) {
    throw toExportError(error, 'ERR_SOURCE', 'source')
  } finally {
    await cursor.close()
  }
}

/** A cursor's documents a driver batch at a time, read as its `toArray` reads them. */
export async function* pages(open: () => MongoFindCursorLike): AsyncGenerator<Document[]> {
  const cursor = open()
  try {
    for await (const doc of cursor) yield [doc].concat(cursor.readBufferedDocuments())
  } catch (error) {
    throw toExportError(error, 'ERR_SOURCE', 'source')
  } finally {
    await cursor.close()
  }
}
