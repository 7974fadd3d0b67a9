// A CSV file written again as CSV in its own dialect: csvSource passes its lines without quotes or
// CR on as their bytes (encodeFor), and only the others go as rows. Held byte for byte to the row
// path (the same export with a transform, which never passes lines): a fuzzer of CSV-like inputs
// in random pieces, and large files mixing both kinds of line, gzipped on every core.
import { gunzipSync } from 'node:zlib'
import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { statements } from '../../examples/statements.mjs'
import { isEncodedRows } from '../../src/core/types.js'
import { csv, csvSource, exportStream, type CsvOptions, type CsvSourceOptions } from '../../src/index.js'
import { csvLike, DELIMITERS, pieces, random, spoilUtf8 } from '../fixtures/csv-fuzz.js'
import { collector } from '../helpers.js'

type Outcome = { bytes: string } | { code: string; message: string }

/**
 * The export's output (gunzipped) or its error; `passed` counts the chunks of lines the source
 * passed on. With `rows`, a transform makes it the row path.
 */
async function convert(
  input: Buffer[],
  source: Omit<CsvSourceOptions, 'stream'>,
  format: CsvOptions,
  { rows = false, gzip = false, batches = true } = {},
): Promise<Outcome & { passed: number }> {
  const stream = csvSource({ stream: Readable.from(input), ...source })
  let passed = 0
  // (Counts what the source hands on, as it hands it on.)
  const push = stream.push.bind(stream)
  stream.push = (chunk: unknown) => {
    if (isEncodedRows(chunk)) passed++
    return push(chunk)
  }
  if (!batches) stream.sendBatches = undefined
  const sink = collector()
  try {
    await exportStream({ source: stream, format: csv(format), sink, gzip, ...(rows ? { transform: (row) => row } : {}) })
    const bytes = gzip ? gunzipSync(sink.buffer()) : sink.buffer()
    return { bytes: bytes.toString('latin1'), passed }
  } catch (error) {
    const { code, message } = error as { code: string; message: string }
    return { code, message, passed }
  }
}

const CLEAN = ['a', 'bc', '', ' ', 'é', '😀', '1.5', '=1+2', '-3', '@x', 'NULL', '2024']
const ODD = ['"q"', '"a,b"', '"a;b"', '"a\tb"', '"a||b"', '"line\nbreak"', '"x""y"', '""', 'x"y', '"cr\rx"']

/** LF lines mostly without quotes (each a record of the header's width), with now and then a quoted cell, a ragged or empty line, a CR LF. */
function mostlyClean(next: () => number, delimiter: string): string {
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!
  const width = 1 + Math.floor(next() * 4)
  const line = (cells: number) => Array.from({ length: cells }, () => (next() < 0.93 ? pick(CLEAN) : pick(ODD))).join(delimiter)
  let text = Array.from({ length: width }, (_, i) => (next() < 0.9 ? `c${i}` : pick(['2024', '', '"q"', '__proto__']))).join(delimiter) + '\n'
  const rows = Math.floor(next() * 40)
  for (let r = 0; r < rows; r++) {
    const odd = next()
    text += odd < 0.012 ? line(width + 1) : line(width)
    text += odd > 0.98 ? '\r\n' : odd > 0.96 ? '\n\n' : '\n'
  }
  return text
}

const strip = ({ passed: _, ...outcome }: Outcome & { passed: number }): Outcome => outcome

describe('csvSource -> csv(): lines passed through as they are', () => {
  it('a fuzzer: 1,500 inputs in random pieces, the bytes of the row path or its error', async () => {
    let passedCases = 0
    let errors = 0
    for (let seed = 1; seed <= 1500; seed++) {
      const next = random(seed)
      const delimiter = DELIMITERS[seed % DELIMITERS.length]!
      const source: Omit<CsvSourceOptions, 'stream'> = {
        delimiter,
        bom: next() < 0.8,
        empty: next() < 0.3 ? 'null' : 'string',
        ...(next() < 0.2 ? { columns: ['c1', 'c2'] } : {}),
      }
      // Mostly the file's own dialect; now and then one that cannot pass lines on.
      const format: CsvOptions = [
        { delimiter },
        { delimiter },
        { delimiter },
        { delimiter, nullValue: 'NULL' },
        { delimiter, escapeFormulas: true },
        { delimiter: delimiter === ',' ? ';' : ',' },
        { delimiter, eol: '\r\n' },
      ][Math.floor(next() * 7)]!
      const bytes = spoilUtf8(Buffer.from(next() < 0.3 ? csvLike(next, delimiter) : mostlyClean(next, delimiter)), next)
      const input = pieces(bytes, next)
      // Half the time the first piece ends after the first line: the lines after a header can pass.
      const lineEnd = input[0]?.indexOf(0x0a) ?? -1
      if (next() < 0.5 && lineEnd !== -1) input.splice(0, 1, input[0]!.subarray(0, lineEnd + 1), input[0]!.subarray(lineEnd + 1))
      const batches = next() < 0.7
      const expected = await convert(input, source, format, { rows: true, batches })
      const actual = await convert(input, source, format, { batches })
      expect(expected.passed).toBe(0)
      if (actual.passed > 0) passedCases++
      if ('code' in expected) errors++
      if (JSON.stringify(strip(actual)) !== JSON.stringify(strip(expected)))
        expect({ seed, source, format, text: bytes.toString(), actual: strip(actual) }).toEqual({
          seed,
          source,
          format,
          text: bytes.toString(),
          actual: strip(expected),
        })
    }
    // Both were tried: lines passed on, and errors.
    expect(passedCases).toBeGreaterThan(250)
    expect(errors).toBeGreaterThan(100)
  }, 120_000)

  it('200,000 statements (quoted memos among clean lines) gzipped on every core: the bytes of the row path', async () => {
    const rows = [...statements(200_000)].map((row) => ({ ...row, posted_at: row.posted_at.toISOString() }))
    const text = await (async () => {
      const sink = collector()
      await exportStream({ source: rows, format: csv(), sink })
      return sink.buffer()
    })()
    const input = [...Array(Math.ceil(text.length / 65_536)).keys()].map((i) => text.subarray(i * 65_536, (i + 1) * 65_536))
    const expected = await convert(input, {}, {}, { rows: true, gzip: true })
    const actual = await convert(input, {}, {}, { gzip: true })
    expect(actual.passed).toBeGreaterThan(100)
    expect(strip(actual)).toEqual(strip(expected))
    expect((expected as { bytes: string }).bytes).toBe(text.toString('latin1')) // (and both are the file itself)
  }, 60_000)

  it('what cannot pass goes as rows: a column named like an index (rows reorder it), invalid UTF-8, a ragged line deep in the file', async () => {
    const clean = Array.from({ length: 5000 }, (_, i) => `${i},name ${i},${i % 7}`).join('\n')
    const cases: Array<[string, Buffer]> = [
      ['index-like name', Buffer.from(`id,2024,n\n${clean}\n`)],
      ['invalid UTF-8', Buffer.concat([Buffer.from(`id,name,n\n${clean}\n`), Buffer.from([0x31, 0x2c, 0xff, 0x2c, 0x32, 0x0a]), Buffer.from(`${clean}\n`)])],
      ['ragged', Buffer.from(`id,name,n\n${clean}\n1,2\n${clean}\n`)],
      ['empty lines', Buffer.from(`id,name,n\n${clean}\n\n\n${clean}\n`)],
    ]
    for (const [name, bytes] of cases) {
      const input = [bytes.subarray(0, 30_000), bytes.subarray(30_000)]
      const expected = await convert(input, {}, {}, { rows: true })
      const actual = await convert(input, {}, {})
      expect(strip(actual), name).toEqual(strip(expected))
      if (name === 'index-like name') expect(actual.passed).toBe(0)
      else expect(actual.passed, name).toBeGreaterThan(0)
    }
  })
})
