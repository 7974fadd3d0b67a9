// Values and columns that formats used to lose or corrupt while reporting success.
import { parse } from 'csv-parse/sync'
import { describe, expect, it } from 'vitest'
import { csv, jsonArray, jsonl, type ExportError } from '../../src/index.js'
import { formatRows } from '../helpers.js'

const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (e: ExportError) => e,
  )

describe('NaN, Infinity and -0 stay distinguishable from NULL and from each other', () => {
  const row = { nan: Number.NaN, inf: Infinity, ninf: -Infinity, nzero: -0, zero: 0, nul: null, nested: { v: [Number.NaN, -0, Infinity] } }

  it('JSON formats write them as PostgreSQL to_json does: "NaN", "Infinity", "-Infinity", -0', async () => {
    const line = await formatRows(jsonl(), [row])
    expect(line).toBe('{"nan":"NaN","inf":"Infinity","ninf":"-Infinity","nzero":-0,"zero":0,"nul":null,"nested":{"v":["NaN",-0,"Infinity"]}}\n')
    const parsed = JSON.parse(line)
    expect(Object.is(parsed.nzero, -0)).toBe(true)
    expect(parsed.nul).toBeNull()
    expect(JSON.parse(await formatRows(jsonArray(), [row]))[0]).toEqual(parsed)
  })

  it('CSV writes NaN, Infinity, -Infinity and -0, and an empty field only for null', async () => {
    const text = await formatRows(csv(), [row])
    expect(text.split('\n')[1]).toBe('NaN,Infinity,-Infinity,-0,0,,"{""v"":[""NaN"",-0,""Infinity""]}"')
  })
})

describe('keys and flattened columns are never lost or doubled', () => {
  it('a top-level "__proto__" key is written by jsonl and jsonArray', async () => {
    const row = JSON.parse('{"__proto__": {"x": 1}, "a": 2}')
    expect(await formatRows(jsonl(), [row])).toBe('{"__proto__":{"x":1},"a":2}\n')
    expect(JSON.parse(await formatRows(jsonArray(), [row]))).toEqual([JSON.parse('{"__proto__": {"x": 1}, "a": 2}')])
  })

  it('flatten keeps a top-level key that contains a dot', async () => {
    expect(await formatRows(csv({ flatten: true }), [{ 'a.b': 1, c: 2, d: { e: 3 } }])).toBe('a.b,c,d.e\n1,2,3\n')
  })

  it('flatten refuses a dotted key and a nested path that would share a column (ERR_FORMAT naming it)', async () => {
    const error = await failure(formatRows(csv({ flatten: true }), [{ 'a.b': 'TOP', a: { b: 'NESTED' } }]))
    expect(error?.code).toBe('ERR_FORMAT')
    expect(error?.message).toContain('"a.b"')
  })

  it('flatten with columns: an ambiguous dotted column is refused, not read twice', async () => {
    const error = await failure(formatRows(csv({ flatten: true, columns: ['a.b'] }), [{ 'a.b': 'TOP', a: { b: 'NESTED' } }]))
    expect(error?.code).toBe('ERR_FORMAT')
    expect(await formatRows(csv({ flatten: true, columns: ['a.b'] }), [{ 'a.b': 'TOP' }, { a: { b: 'NESTED' } }])).toBe('a.b\nTOP\nNESTED\n')
  })
})

describe('CSV delimiters', () => {
  it('multi-character delimiters: a cell holding part of one is quoted, so the output parses back', async () => {
    const rows = [
      { a: 'x:', b: ':y', c: 'plain' },
      { a: '|', b: 'a||b', c: '|x|' },
    ]
    for (const delimiter of ['::', '||', ':|:']) {
      const text = await formatRows(csv({ delimiter }), rows)
      expect(parse(text, { columns: true, delimiter })).toEqual(rows)
    }
    const text = await formatRows(csv({ eol: '\r\n\r\n' }), [{ a: 'x\r', b: '\ny' }])
    expect(parse(text, { columns: true, record_delimiter: '\r\n\r\n' })).toEqual([{ a: 'x\r', b: '\ny' }])
  })

  it('refuses delimiter, quote and eol that overlap (the output could not be parsed)', () => {
    const code = (options: object) => {
      try {
        csv(options)
        return 'accepted'
      } catch (error) {
        return `${(error as ExportError).code}: ${(error as Error).message}`
      }
    }
    expect(code({ delimiter: '"' })).toMatch(/^ERR_INVALID_OPTION: .*`delimiter`/)
    expect(code({ quote: ',' })).toMatch(/^ERR_INVALID_OPTION: .*`quote`/)
    expect(code({ eol: ',' })).toMatch(/^ERR_INVALID_OPTION: .*`eol`/)
    expect(code({ delimiter: ',;', eol: ';' })).toMatch(/^ERR_INVALID_OPTION/)
    expect(code({ quote: "''" })).toMatch(/^ERR_INVALID_OPTION: .*`quote`/)
    expect(code({ quote: '\n' })).toMatch(/^ERR_INVALID_OPTION/)
    expect(code({ delimiter: '\t', quote: "'", eol: '\r\n' })).toBe('accepted')
  })
})
