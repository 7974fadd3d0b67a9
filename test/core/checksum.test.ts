import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { CHECKSUM_ALGORITHMS, checksumOf, combineAll, emptyChecksum } from '../../src/core/checksum.js'

const hex = (base64: string) => Buffer.from(base64, 'base64').toString('hex')

describe('full-object checksums', () => {
  it('gives the catalogued check values of "123456789"', async () => {
    const text = Buffer.from('123456789')
    expect(hex((await checksumOf('CRC64NVME', text)).value)).toBe('ae8b14860a799888')
    expect(hex((await checksumOf('CRC32C', text)).value)).toBe('e3069283')
    expect(hex((await checksumOf('CRC32', text)).value)).toBe('cbf43926')
  })

  it.each(CHECKSUM_ALGORITHMS)('combines the checksums of parts into that of their bytes in one piece (%s)', async (algorithm) => {
    const data = randomBytes(1024 * 1024 + 17)
    const whole = await checksumOf(algorithm, data)
    for (let trial = 0; trial < 12; trial++) {
      // Cut points at random, some parts empty, one of a single byte.
      const cuts = [0, data.length, 1, ...Array.from({ length: trial }, () => Math.floor(Math.random() * data.length))].sort((a, b) => a - b)
      if (trial % 3 === 0) cuts.push(cuts[2])
      cuts.sort((a, b) => a - b)
      const parts = await Promise.all(cuts.slice(1).map((end, i) => checksumOf(algorithm, data.subarray(cuts[i], end))))
      expect(combineAll(parts)).toEqual(whole)
    }
    expect(combineAll([await emptyChecksum(algorithm), whole])).toEqual(whole)
  })

  it('agrees with zlib for CRC32', async () => {
    const data = randomBytes(100_000)
    expect(hex((await checksumOf('CRC32', data)).value)).toBe(crc32(data).toString(16).padStart(8, '0'))
  })
})
