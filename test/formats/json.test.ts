import { describe, expect, it } from 'vitest'
import { jsonArray, jsonl } from '../../src/index.js'
import { formatRows } from '../helpers.js'

const row = {
  text: 'a,"b"\r\nc 😀',
  empty: '',
  nul: null,
  big: 9007199254740993n,
  date: new Date('2026-02-01T12:34:56.789Z'),
  yes: true,
  no: false,
  nested: { list: [1, { deep: 2n }], at: new Date(0), bytes: Buffer.from('hi') },
  bytes: Buffer.from([1, 2, 3]),
}
const expected = {
  text: 'a,"b"\r\nc 😀',
  empty: '',
  nul: null,
  big: '9007199254740993',
  date: '2026-02-01T12:34:56.789Z',
  yes: true,
  no: false,
  nested: { list: [1, { deep: '2' }], at: '1970-01-01T00:00:00.000Z', bytes: 'aGk=' },
  bytes: 'AQID',
}

describe('jsonl', () => {
  it('writes one JSON object per line with the value policy', async () => {
    const text = await formatRows(jsonl(), [row, { a: 1 }])
    const lines = text.split('\n')
    expect(lines).toHaveLength(3)
    expect(lines[2]).toBe('')
    expect(JSON.parse(lines[0])).toEqual(expected)
    expect(JSON.parse(lines[1])).toEqual({ a: 1 })
  })

  it('writes nothing for zero rows', async () => {
    expect(await formatRows(jsonl(), [])).toBe('')
  })

  it('encodes binary as hex when asked', async () => {
    expect(await formatRows(jsonl({ binary: 'hex' }), [{ b: Buffer.from('hi') }])).toBe('{"b":"6869"}\n')
  })
})

describe('jsonArray', () => {
  it('is one valid JSON document for any row count', async () => {
    expect(JSON.parse(await formatRows(jsonArray(), []))).toEqual([])
    expect(JSON.parse(await formatRows(jsonArray(), [row]))).toEqual([expected])
    const many = Array.from({ length: 2_000 }, (_, i) => ({ i }))
    expect(JSON.parse(await formatRows(jsonArray(), many))).toEqual(many)
  })

  it('writes [] for zero rows', async () => {
    expect((await formatRows(jsonArray(), [])).trim()).toBe('[]')
  })
})
