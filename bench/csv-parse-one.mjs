// One parser over one CSV file, for the csv-parsers suite:
//   node bench/csv-parse-one.mjs <file> <csv-parse|papaparse|udsv|ours|csv-parse-objects|csvSource|csvSource-infer> [<bundled tokenizer>]
import { createReadStream } from 'node:fs'
import { parse } from 'csv-parse'
import Papa from 'papaparse'
import { inferSchema, initParser } from 'udsv'
import { csvSource, isRowBatch } from 'stream-export'

const [file, which, tokenizer] = process.argv.slice(2)
const started = performance.now()
let rows = 0
if (which === 'csv-parse') {
  for await (const _record of createReadStream(file).pipe(parse({ bom: true }))) rows++
} else if (which === 'ours') {
  // csvSource's tokenizer alone (internal: bundled from the source), to string arrays.
  const { CsvTokenizer } = await import(tokenizer)
  const records = new CsvTokenizer(',', false)
  const onRecord = () => void rows++
  for await (const chunk of createReadStream(file)) records.push(chunk, onRecord)
  records.end(onRecord)
} else if (which === 'csv-parse-objects') {
  // What csvSource did before: csv-parse to objects named by the header.
  for await (const _record of createReadStream(file).pipe(parse({ bom: true, columns: true, skip_empty_lines: true }))) rows++
  rows++ // the header
} else if (which === 'csvSource' || which === 'csvSource-infer') {
  // Text cells, or typed as inferred from the first 1,000 rows (id and amount numbers, posted_at a timestamp).
  const source = csvSource({ path: file, ...(which === 'csvSource-infer' ? { types: 'infer' } : {}) })
  source.sendBatches() // as exportStream asks for them
  for await (const chunk of source) rows += isRowBatch(chunk) ? chunk.rows.length : 1
  rows++ // the header
} else if (which === 'udsv') {
  let parser
  for await (const chunk of createReadStream(file, { encoding: 'utf8' })) {
    parser ??= initParser(inferSchema(chunk))
    parser.chunk(chunk, parser.stringArrs, () => void rows++)
  }
  parser.end()
  rows++ // the header, which udsv reads as the schema
} else {
  await new Promise((resolve, reject) => Papa.parse(createReadStream(file), { step: () => void rows++, complete: resolve, error: reject }))
}
console.log(JSON.stringify({ rows, ms: performance.now() - started, rssMb: Math.round(process.resourceUsage().maxRSS / 1024) }))
