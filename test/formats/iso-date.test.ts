import { describe, expect, it } from 'vitest'
import { isoDate } from '../../src/formats/values.js'
import { ExportError } from '../../src/core/errors.js'

describe('isoDate', () => {
  it('writes what Date#toISOString writes, across the fast path and its edges', () => {
    const edges = ['1000-01-01T00:00:00.000Z', '0999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z', '+010000-01-01T00:00:00.000Z']
    const times = [
      ...edges.map((text) => Date.parse(text)),
      ...[-1, 0, 1, 951782400000 /* 2000-02-29 */, 4107542399999 /* 2100-02-28T23:59:59.999 */, -62198755200000, 8.64e15, -8.64e15],
    ]
    // 200,000 instants spread over years 1 to 9999 and 200,000 consecutive milliseconds from before 1970.
    let x = 12345
    for (let i = 0; i < 200_000; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0
      times.push(-62135596800000 + Math.floor((x / 2 ** 32) * 315537897600000) + (i % 1000))
      times.push(-1000 - i * 997)
    }
    for (const time of times) {
      const date = new Date(time)
      if (isoDate(date) !== date.toISOString()) expect(isoDate(date)).toBe(date.toISOString())
    }
  })

  it('refuses an invalid Date', () => {
    expect(() => isoDate(new Date(Number.NaN))).toThrow(ExportError)
  })
})
