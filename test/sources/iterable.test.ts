import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { fromIterable } from '../../src/index.js'

describe('fromIterable', () => {
  it('reads arrays, generators and async generators', async () => {
    async function* asyncRows() {
      yield { a: 1 }
      yield { a: 2 }
    }
    expect(await fromIterable([{ a: 1 }]).toArray()).toEqual([{ a: 1 }])
    expect(await fromIterable(new Set([{ a: 3 }])).toArray()).toEqual([{ a: 3 }])
    expect(await fromIterable(asyncRows()).toArray()).toEqual([{ a: 1 }, { a: 2 }])
  })

  it('returns an object-mode Readable as it is', () => {
    const readable = Readable.from([{ a: 1 }])
    expect(fromIterable(readable)).toBe(readable)
  })

  it('destroying the stream runs the generator cleanup', async () => {
    let closed = false
    async function* rows() {
      try {
        for (let i = 0; ; i++) yield { i }
      } finally {
        closed = true
      }
    }
    const stream = fromIterable(rows())
    for await (const row of stream) if ((row as { i: number }).i === 5) break
    // The generator's cleanup has run by the time the stream closes (Node 26's loop exit no longer
    // waits for the close itself).
    if (!stream.closed) await new Promise((resolve) => stream.once('close', resolve))
    expect(closed).toBe(true)
  })

  it('rejects what is not a row iterable', () => {
    expect(() => fromIterable('abc' as never)).toThrow(
      'Expected `rows` to be an Iterable, an AsyncIterable or an object-mode Readable of rows, got `"abc"` (string)',
    )
    expect(() => fromIterable(Readable.from(Buffer.from('x'), { objectMode: false }) as never)).toThrow(/object-mode Readable/)
    expect(() => fromIterable(42 as never)).toThrow(/got `42` \(number\)/)
  })
})
