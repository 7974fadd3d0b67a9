// CSV parsers suite (issue "File ETL at engine speed", item 1): how fast each candidate parses the
// file-ETL input, streamed in 64 KiB chunks as csvSource reads a file: csv-parse (what csvSource
// used), papaparse, udsv and our tokenizer, to string arrays; then csvSource's rows as objects
// against csv-parse's. Each in its own child process, rows counted.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, statSync } from 'node:fs'
import { buildSync } from 'esbuild'
import { fmt, machine, writeSection } from './lib.mjs'

const ROWS = Number(process.env.BENCH_FILE_ETL_ROWS ?? 1_000_000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const input = `${dir}csv-parsers.csv`
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
execFileSync(process.execPath, [new URL('./core-export.mjs', import.meta.url).pathname, 'csv', 'statements', ROWS, input, '--plain'], { stdio: 'inherit' })
const mb = statSync(input).size / 1e6

// Our tokenizer is internal: bundled from the source.
const tokenizer = `${dir}csv-tokenizer.mjs`
buildSync({
  entryPoints: [new URL('../src/sources/files/csv-tokenizer.ts', import.meta.url).pathname],
  bundle: true,
  platform: 'node',
  format: 'esm',
  outfile: tokenizer,
  logLevel: 'error',
})

const parsers = ['csv-parse', 'papaparse', 'udsv', 'ours']
const sources = ['csv-parse-objects', 'csvSource', 'csvSource-infer']
const runs = Object.fromEntries([...parsers, ...sources].map((name) => [name, []]))
for (let round = 0; round < ROUNDS; round++)
  for (const name of [...parsers, ...sources]) {
    const child = spawnSync(process.execPath, [new URL('./csv-parse-one.mjs', import.meta.url).pathname, input, name, tokenizer], { encoding: 'utf8' })
    if (child.status !== 0) throw new Error(`${name} failed:\n${child.stderr}`)
    const run = JSON.parse(child.stdout.trim())
    if (run.rows !== ROWS + 1) throw new Error(`${name} read ${run.rows} records, not ${ROWS + 1}`)
    runs[name].push(run)
  }
rmSync(input)
rmSync(tokenizer)
const line = (name, label, baseline) => {
  const ms = median(runs[name].map((r) => r.ms))
  const base = median(runs[baseline].map((r) => r.ms))
  console.error(`${name}: ${fmt.s(ms)} s`)
  return `| ${label} | ${fmt.s(ms)} | ${(mb / (ms / 1000)).toFixed(0)} | ${fmt.x(base / ms)} | ${Math.max(...runs[name].map((r) => r.rssMb))} |`
}
const LABELS = { 'csv-parse': 'csv-parse', papaparse: 'papaparse', udsv: 'udsv', ours: 'stream-export (csv-tokenizer.ts)' }
const lines = parsers.map((name) => line(name, LABELS[name], 'csv-parse'))

writeSection(
  'csv-parsers',
  `
## CSV parsers: the file-ETL input parsed

Run: \`npm run bench -- csv-parsers\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
The file-ETL input (${fmt.int(ROWS)} statements, ${fmt.mb(mb * 1e6)} MB, quoted memos with commas, quotes and
newlines) read in 64 KiB chunks and parsed to string arrays, the header included, each parser in
its own child process (\`bench/csv-parse-one.mjs\`): csv-parse 7 (what \`csvSource\` used), papaparse 5,
udsv 0.7 (\`chunk\`/\`stringArrs\`) and our tokenizer (held to csv-parse by
\`test/sources/csv-reader.test.ts\`). Every run must count ${fmt.int(ROWS + 1)} records. Medians of ${ROUNDS}
rounds. Parse only: no typing, no rows to objects, no output.

| parser | s | MB/s | vs csv-parse | peak RSS MB |
|---|---:|---:|---:|---:|
${lines.join('\n')}

The source as an export reads it: rows as objects named by the header (csv-parse with
\`columns: true\`, as \`csvSource\` was built on it; \`csvSource\` now, in batches).

| source | s | MB/s | vs csv-parse | peak RSS MB |
|---|---:|---:|---:|---:|
${line('csv-parse-objects', 'csv-parse, columns: true', 'csv-parse-objects')}
${line('csvSource', 'csvSource', 'csv-parse-objects')}
${line('csvSource-infer', "csvSource, types: 'infer' (numbers, a timestamp)", 'csv-parse-objects')}

Typed cells cost little over text: a number of at most 15 digits and a timestamp in
\`toISOString\`'s layout are read from the cell's characters (\`src/sources/files/csv-types.ts\`;
before, a regular expression, \`Date\`'s parser and an exactness check took the inferred read to
7.1 s against 2.5 s for text). Reading typed values straight from the bytes, without the cell's
string, would save at most the decoding, which text cells pay too.
`,
)
