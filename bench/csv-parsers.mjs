// CSV parsers suite (issue "File ETL at engine speed", item 1): how fast each candidate parses the
// file-ETL input, streamed in 64 KiB chunks as csvSource reads a file: csv-parse (what csvSource
// uses today), papaparse and udsv, to string arrays, each in its own child process, rows counted.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, statSync } from 'node:fs'
import { fmt, machine, writeSection } from './lib.mjs'

const ROWS = Number(process.env.BENCH_FILE_ETL_ROWS ?? 1_000_000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const input = `${dir}csv-parsers.csv`
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
execFileSync(process.execPath, [new URL('./core-export.mjs', import.meta.url).pathname, 'csv', 'statements', ROWS, input, '--plain'], { stdio: 'inherit' })
const mb = statSync(input).size / 1e6

const parsers = ['csv-parse', 'papaparse', 'udsv']
const runs = Object.fromEntries(parsers.map((name) => [name, []]))
for (let round = 0; round < ROUNDS; round++)
  for (const name of parsers) {
    const child = spawnSync(process.execPath, [new URL('./csv-parse-one.mjs', import.meta.url).pathname, input, name], { encoding: 'utf8' })
    if (child.status !== 0) throw new Error(`${name} failed:\n${child.stderr}`)
    const run = JSON.parse(child.stdout.trim())
    if (run.rows !== ROWS + 1) throw new Error(`${name} read ${run.rows} records, not ${ROWS + 1}`)
    runs[name].push(run)
  }
rmSync(input)
const base = median(runs['csv-parse'].map((r) => r.ms))
const lines = parsers.map((name) => {
  const ms = median(runs[name].map((r) => r.ms))
  console.error(`${name}: ${fmt.s(ms)} s`)
  return `| ${name} | ${fmt.s(ms)} | ${(mb / (ms / 1000)).toFixed(0)} | ${fmt.x(base / ms)} | ${Math.max(...runs[name].map((r) => r.rssMb))} |`
})

writeSection(
  'csv-parsers',
  `
## CSV parsers: the file-ETL input parsed

Run: \`npm run bench -- csv-parsers\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
The file-ETL input (${fmt.int(ROWS)} statements, ${fmt.mb(mb * 1e6)} MB, quoted memos with commas, quotes and
newlines) read in 64 KiB chunks and parsed to string arrays, the header included, each parser in
its own child process (\`bench/csv-parse-one.mjs\`): csv-parse 7 (\`csvSource\` today), papaparse 5 and
udsv 0.7 (\`chunk\`/\`stringArrs\`). Every run must count ${fmt.int(ROWS + 1)} records. Medians of ${ROUNDS}
rounds. Parse only: no typing, no rows to objects, no output.

| parser | s | MB/s | vs csv-parse | peak RSS MB |
|---|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
