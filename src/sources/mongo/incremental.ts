import type { Readable } from 'node:stream'
import { invalidOption } from '../../core/errors.js'
import { checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { fromPages } from '../iterable.js'
import { pages, type Document, type MongoCollectionLike } from './query.js'
import { bsonText } from './bson.js'
import type { SourceExtras } from '../../core/types.js'

/** Where a MongoDB incremental export stopped (plain JSON; see docs/incremental.md). */
export interface MongoIncrementalWatermark {
  version: 1
  /** The cursor field, the type of its values, and the highest value exported (milliseconds for a Date). */
  field: string
  type: 'date' | 'number'
  high: number
  /** Documents exported within `lookbackMs` below `high`, as `_id|value`: not exported again. */
  seen: string[]
}

export interface MongoIncrementalSourceOptions {
  collection: MongoCollectionLike
  /** The field every write sets (a Date or a number), e.g. `updatedAt`. Default `updatedAt`. */
  field?: string
  filter?: Document
  projection?: Document
  /** The watermark of the previous run (`result.watermark`); undefined: every document. */
  after?: MongoIncrementalWatermark
  /**
   * How late a write may become visible after the value it wrote to `field` (a transaction's
   * length, clock skew between writers): documents this far below the last run's highest value
   * are read again and those not exported yet are exported. Default 600000 (10 minutes).
   */
  lookbackMs?: number
  /** Documents per driver batch. Default 1000. */
  batchSize?: number
}

/** A MongoDB incremental source: `watermark` is the next run's `after`, once every document has been read. */
export type MongoIncrementalSource = Readable & SourceExtras & { readonly watermark: MongoIncrementalWatermark | undefined }

/** A field value as a number (a Date by its milliseconds) with its type; undefined for what cannot order a feed. */
function position(value: unknown): { at: number; type: 'date' | 'number' } | undefined {
  if (value instanceof Date) return { at: value.getTime(), type: 'date' }
  if (typeof value === 'number') return { at: value, type: 'number' }
  if (typeof value === 'object' && value !== null && '_bsontype' in value) {
    const number = Number(bsonText(value)) // Int32, Long, Double, Decimal128
    return Number.isFinite(number) ? { at: number, type: 'number' } : undefined
  }
  return undefined
}

const idText = (id: unknown): string => {
  if (typeof id === 'object' && id !== null && '_bsontype' in id) return String(bsonText(id))
  return JSON.stringify(id)
}

function checkWatermark(after: unknown, field: string): asserts after is MongoIncrementalWatermark {
  const w = after as Partial<MongoIncrementalWatermark> | null
  const ok =
    typeof w === 'object' &&
    w !== null &&
    w.version === 1 &&
    w.field === field &&
    (w.type === 'date' || w.type === 'number') &&
    typeof w.high === 'number' &&
    Array.isArray(w.seen) &&
    w.seen.every((key) => typeof key === 'string')
  if (!ok) invalidOption('after', `the watermark of an earlier run over \`${field}\` (result.watermark)`, after)
}

const MONGO_INCREMENTAL_OPTION_NAMES = optionNames<MongoIncrementalSourceOptions>({
  collection: true,
  field: true,
  filter: true,
  projection: true,
  after: true,
  lookbackMs: true,
  batchSize: true,
})

/**
 * The documents of a collection written since the previous run, by a field every write sets
 * (`updatedAt`), in its order: each run reads from `lookbackMs` below the previous run's highest
 * value and skips the documents it exported there, so a write that becomes visible late (a
 * transaction, a writer's clock behind) within that window is exported once. See docs/incremental.md.
 */
export function mongoIncrementalSource(options: MongoIncrementalSourceOptions): MongoIncrementalSource {
  checkObject('options', options, MONGO_INCREMENTAL_OPTION_NAMES)
  const { collection, field = 'updatedAt', filter = {}, projection, after, lookbackMs = 600_000, batchSize = 1000 } = options
  if (typeof collection?.find !== 'function') invalidOption('collection', 'a mongodb Collection', collection)
  checkString('field', field)
  checkObject('filter', filter)
  if (projection !== undefined) checkObject('projection', projection)
  if (!Number.isSafeInteger(lookbackMs) || lookbackMs < 0) invalidOption('lookbackMs', 'a whole number of milliseconds, 0 or more', lookbackMs)
  checkPositiveInteger('batchSize', batchSize)
  if (after !== undefined) checkWatermark(after, field)

  let high = after?.high ?? Number.NEGATIVE_INFINITY
  let type = after?.type ?? 'date'
  // Documents exported near the top, by the field's value: the next run skips them.
  let recent = (after?.seen ?? []).map((key) => ({ key, at: Number(key.slice(key.lastIndexOf('|') + 1)) }))
  const skip = new Set(after?.seen)
  let ended = false

  const from = after && (after.type === 'date' ? new Date(after.high - lookbackMs) : after.high - lookbackMs)
  const since = after === undefined ? filter : { $and: [filter, { [field]: { $gte: from } }] }
  async function* changes(): AsyncGenerator<Document[]> {
    for await (const page of pages(() => collection.find(since, { projection, sort: { [field]: 1, _id: 1 }, batchSize }))) {
      const fresh = page.filter((doc) => {
        const value = position(doc[field])
        if (value === undefined) return true // exported, but it cannot move the watermark
        const { at } = value
        const key = `${idText(doc._id)}|${at}`
        if (skip.has(key)) return false
        if (at > high) high = at
        type = value.type
        recent.push({ key, at })
        return true
      })
      if (recent.length > 4 * batchSize) recent = recent.filter(({ at }) => at >= high - lookbackMs)
      yield fresh
    }
    ended = true
  }

  const source = fromPages(changes())
  const watermark = (): MongoIncrementalWatermark | undefined => {
    if (!ended) return undefined
    const top = Number.isFinite(high) ? high : (after?.high ?? 0)
    return { version: 1, field, type, high: top, seen: recent.filter(({ at }) => at >= top - lookbackMs).map(({ key }) => key) }
  }
  return Object.defineProperty(source, 'watermark', { get: watermark, enumerable: true }) as MongoIncrementalSource
}
