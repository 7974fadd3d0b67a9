// Type tests of the public API, checked by `npm run typecheck` (tsc -p test): a wrong inference
// fails CI there. The calls sit in functions that never run.
import { Writable } from 'node:stream'
import { describe, expectTypeOf, it } from 'vitest'
import {
  csv,
  exportStream,
  fileSink,
  s3Sink,
  type ExportResult,
  type Location,
  type Manifest,
  type PartInfo,
  type S3Location,
  type Sink,
} from '../src/index.js'
import type { S3ClientLike } from '../src/index.js'

declare const client: S3ClientLike
declare const custom: Sink<{ url: string }>

describe('public types', () => {
  it("exportStream's result carries the sink's location type", () => {
    const types = async () => {
      const file = await exportStream({ source: [], format: csv(), sink: fileSink({ path: 'x.csv' }) })
      expectTypeOf(file.location).toEqualTypeOf<{ path: string } | undefined>()
      const s3 = await exportStream({ source: [], format: csv(), sink: s3Sink({ client, bucket: 'b', key: 'k' }) })
      expectTypeOf(s3.location).toEqualTypeOf<S3Location | undefined>()
      const mine = await exportStream({ source: [], format: csv(), sink: custom })
      expectTypeOf(mine.location).toEqualTypeOf<{ url: string } | undefined>()
      const plain = await exportStream({ source: [], format: csv(), sink: new Writable() })
      expectTypeOf(plain).toEqualTypeOf<ExportResult<Location>>()
      expectTypeOf(plain.checkpoint).toEqualTypeOf<unknown>()
      // A split export: the manifest's location, and each part's, are the sink's location type.
      const parts = await exportStream({ source: [], format: csv(), sink: s3Sink({ client, bucket: 'b', key: 'k' }), split: { rows: 10 } })
      expectTypeOf(parts.parts).toEqualTypeOf<Array<PartInfo<S3Location>> | undefined>()
      expectTypeOf(parts.manifest).toEqualTypeOf<Manifest<S3Location> | undefined>()
    }
    expectTypeOf(types).returns.resolves.toBeVoid()
  })

  it('any object type can be a location; a primitive cannot', () => {
    expectTypeOf<Sink<{ url: string }>['location']>().toEqualTypeOf<{ url: string } | undefined>()
    // @ts-expect-error a location is an object
    expectTypeOf<Sink<string>>().not.toBeAny()
  })
})
