// Transform suite: a generated CSV file (100 MB, 1 GB) -> mask e-mails -> JSONL -> gzip(6) -> file.
import { mkdirSync, rmSync, statSync } from 'node:fs'
import { fmt, machine, runChild, writeSection } from './lib.mjs'

const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const script = (name) => new URL(name, import.meta.url).pathname
const BYTES_PER_ROW = 116.7 // examples/statements.mjs rows as CSV

const lines = []
for (const targetMb of (process.env.BENCH_ETL_MB ?? '100,1000').split(',').map(Number)) {
  const rows = Math.round((targetMb * 1e6) / BYTES_PER_ROW)
  const input = `${dir}etl-${targetMb}.csv`
  runChild(script('core-export.mjs'), ['csv', rows, input, '--plain'])
  const size = statSync(input).size
  const run = runChild(script('etl-export.mjs'), [input, `${input}.jsonl.gz`])
  rmSync(input)
  rmSync(`${input}.jsonl.gz`)
  console.error(`${fmt.mb(size)} MB: ${fmt.s(run.ms)} s, ${(size / 1e6 / (run.ms / 1000)).toFixed(1)} MB/s, RSS ${run.rssMb.toFixed(0)} MB`)
  lines.push(
    `| ${fmt.mb(size)} | ${fmt.int(run.rows)} | ${fmt.s(run.ms)} | **${(size / 1e6 / (run.ms / 1000)).toFixed(1)}** | ${fmt.int(run.rows / (run.ms / 1000))} | ${fmt.mb(run.bytes)} | ${run.rssMb.toFixed(0)} |`,
  )
}

writeSection(
  'etl',
  `
## Row transforms: CSV file -> mask e-mails -> JSONL -> gzip(6) -> file

Run: \`npm run bench -- etl\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
Input: the statements of \`examples/statements.mjs\` written as CSV (memo text with commas, quotes
and newlines), read by \`csvSource({ path })\` (csv-parse), each row's e-mail masked by a
\`transform\`, written as JSON Lines through gzip level 6 to a file, in a child process.
MB/s counts input bytes.

| input MB | rows | wall s | input MB/s | rows/s | output gzipped MB | peak RSS MB |
|---:|---:|---:|---:|---:|---:|---:|
${lines.join('\n')}
`,
)
