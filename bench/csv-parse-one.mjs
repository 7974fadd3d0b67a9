// One parser over one CSV file, for the csv-parsers suite: node bench/csv-parse-one.mjs <file> <csv-parse|papaparse|udsv>
import { createReadStream } from 'node:fs'
import { parse } from 'csv-parse'
import Papa from 'papaparse'
import { inferSchema, initParser } from 'udsv'

const [file, which] = process.argv.slice(2)
const started = performance.now()
let rows = 0
if (which === 'csv-parse') {
  for await (const _record of createReadStream(file).pipe(parse({ bom: true }))) rows++
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
