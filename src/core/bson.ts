/** The members of the mongodb driver's BSON values this library reads, recognised by `_bsontype` (bson itself is not needed). */
export interface BsonLike {
  _bsontype: string
  toHexString(): string
  toString(): string
  valueOf(): unknown
  sub_type: number
  buffer: Uint8Array
  position: number
  toUUID(): { toHexString(): string }
}
