// The fast readings of typed CSV cells (a number of at most 15 digits without an exponent, a
// timestamp in toISOString's layout) held to the general ones they skip (csv-types.ts GENERAL: the
// regular expressions, Date's parser and the exactness check). Every cell gives the same value, or
// is refused alike.
import { describe, expect, it } from 'vitest'
import { GENERAL, inferredValue, NotOfType, typedValue } from '../../src/sources/files/csv-types.js'
import { random } from '../fixtures/csv-fuzz.js'

// The general readings; a cell they refuse stays its text, as an inferred type keeps it.
const inferred = (text: string, value: unknown) => (value instanceof NotOfType ? text : value)
const reference = {
  number: (text: string) => inferred(text, GENERAL.number(text)),
  timestamp: (text: string) => inferred(text, GENERAL.timestamp(text)),
}

/** A value as comparable text (-0 apart from 0, a Date by its time). */
const seen = (value: unknown) => (value instanceof Date ? `date ${value.getTime()}` : Object.is(value, -0) ? '-0' : `${typeof value} ${String(value)}`)

describe('typed CSV cells: the fast readings give what the general ones give', () => {
  it('numbers: 20,000 decimals of every length, sign, exponent and zero', () => {
    const next = random(7)
    const digits = (n: number) => Array.from({ length: n }, () => String(Math.floor(next() * 10))).join('')
    const cases = [
      '0',
      '-0',
      '+0',
      '0.0',
      '1e400',
      '-1e400',
      '1e-400',
      '0.1',
      '0.30000000000000004',
      '9007199254740993',
      '123456789012345',
      '1234567890123456',
      '-99999999999999.9',
      '1.',
      '.5',
      '01',
      '1e5',
      '',
    ]
    for (let i = 0; i < 20_000; i++) {
      const whole = next() < 0.2 ? '0' : `${1 + Math.floor(next() * 9)}${digits(Math.floor(next() * 18))}`
      const fraction = next() < 0.5 ? `.${digits(1 + Math.floor(next() * 18))}` : ''
      const exponent = next() < 0.1 ? `e${next() < 0.5 ? '-' : ''}${Math.floor(next() * 400)}` : ''
      cases.push(`${['', '-', '+'][Math.floor(next() * 3)]}${whole}${fraction}${exponent}`)
    }
    for (const text of cases) expect(seen(inferredValue('number', text)), text).toBe(seen(text === '' ? null : reference.number(text)))
  })

  it('timestamps: 20,000 in and out of range, every layout, years before 100 and leap days', () => {
    const next = random(11)
    const two = (max: number) => String(Math.floor(next() * max)).padStart(2, '0')
    const cases = [
      '2026-02-29T00:00:00Z',
      '2024-02-29T00:00:00Z',
      '2100-02-29T00:00:00.000Z',
      '2000-02-29 23:59:59.999z',
      '0099-12-31T00:00:00Z',
      '0000-01-01T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T00:60:00Z',
      '2026-01-01T00:00:60Z',
      '2026-01-01T00:00:00.1Z',
      '2026-01-01T00:00:00+01',
      '2026-01-01t00:00:00Z',
      '2026-01-01X00:00:00Z',
      '2026-01-0100:00:00Z',
      '20260101T000000Z',
      '2026-1-01T00:00:00.000Z',
      '2026-01-01T00:00:00.00aZ',
      '+026-01-01T00:00:00Z',
    ]
    for (let i = 0; i < 20_000; i++) {
      const year = next() < 0.1 ? String(Math.floor(next() * 200)).padStart(4, '0') : String(1800 + Math.floor(next() * 500))
      const t = ['T', 't', ' ', 'x'][Math.floor(next() * 4)]!
      const fraction = next() < 0.5 ? `.${String(Math.floor(next() * 1000)).padStart(next() < 0.8 ? 3 : 2, '0')}` : ''
      const zone = next() < 0.8 ? (next() < 0.5 ? 'Z' : 'z') : ['+01', '-05:30', '+0530', '+25:00', 'Q'][Math.floor(next() * 5)]!
      cases.push(`${year}-${two(14)}-${two(33)}${t}${two(25)}:${two(61)}:${two(61)}${fraction}${zone}`)
    }
    for (const text of cases) expect(seen(inferredValue('timestamp', text)), text).toBe(seen(reference.timestamp(text)))
  })

  it('a declared type refuses what the general reading refused, with its reason', () => {
    const where = { line: 2, column: 'at' }
    expect(() => typedValue('timestamp', '2026-02-30T00:00:00Z', where)).toThrow('Line 2, column "at": "2026-02-30T00:00:00Z" is not a valid timestamp')
    expect(() => typedValue('number', '1e400', where)).toThrow('has more digits than a JS number holds (use numeric)')
    expect(typedValue('number', '123456789012345', where)).toBe(123456789012345)
  })
})
