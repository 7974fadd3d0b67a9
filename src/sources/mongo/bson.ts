import type { BsonLike } from '../../core/bson.js'

/**
 * The text of a BSON value by which the incremental source orders documents and remembers the ones
 * it exported (watermarks keep these texts from run to run, so they must not change): ObjectId ->
 * 24-char hex, Decimal128 and Long -> exact decimal text, Int32/Double -> the number's text, Binary
 * -> hex, UUID (subtype 4) -> canonical UUID text; undefined for other types. The text formats
 * write these values by their own policy (formats/values.ts), which may change without moving a
 * watermark.
 */
export function bsonText(value: object): string | undefined {
  const bson = value as Partial<BsonLike>
  switch (bson._bsontype) {
    case 'ObjectId':
      return bson.toHexString!()
    case 'Decimal128':
    case 'Long':
      return bson.toString!()
    case 'Int32':
    case 'Double':
      return String(Number(bson.valueOf!()))
    case 'Binary': {
      if (bson.sub_type === 4) return bson.toUUID!().toHexString()
      const bytes = bson.buffer!.subarray(0, bson.position)
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
    }
    default:
      return undefined
  }
}
