// setHighWaterMark (src/sources/high-water-mark.ts) writes Node's own Readable state, which Node
// does not document: after a Node upgrade that moves it, this fails naming it.
import { Readable } from 'node:stream'
import { expect, it } from 'vitest'
import { setHighWaterMark } from '../../src/sources/high-water-mark.js'

it("a Readable's high-water mark is Readable#_readableState.highWaterMark, which setHighWaterMark changes", () => {
  const stream = new Readable({ objectMode: true, read() {} })
  const state = (stream as unknown as { _readableState?: { highWaterMark?: unknown } })._readableState
  expect(
    typeof state?.highWaterMark,
    `Node ${process.version}: Readable#_readableState.highWaterMark is ${typeof state?.highWaterMark}; src/sources/high-water-mark.ts relies on a number there`,
  ).toBe('number')
  setHighWaterMark(stream, 2)
  expect(stream.readableHighWaterMark).toBe(2)
  expect(stream.push({ row: 1 })).toBe(true)
  expect(stream.push({ row: 2 }), 'a Readable buffering 2 chunks asks for no more').toBe(false)
})
