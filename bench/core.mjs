// Core suite: in-memory source -> csv|jsonl -> gzip(6) -> file, against `gzip -6` on the same bytes.
import { mkdirSync, rmSync, statSync } from 'node:fs'
import { fmt, machine, runChild, timeShell, writeSection } from './lib.mjs'

const sizes = (process.env.BENCH_ROWS ?? '100000,1000000,5000000').split(',').map(Number)
const naiveSizes = sizes.filter((n) => n <= 1_000_000)
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })
const script = (name) => new URL(name, import.meta.url).pathname

const rows = []
for (const format of ['csv', 'jsonl']) {
  for (const n of sizes) {
    const plain = `${dir}${format}-${n}.${format}`
    runChild(script('core-export.mjs'), [format, n, plain, '--plain'])
    const gzipMs = timeShell(`gzip -6 -c ${plain} > ${plain}.gz`)
    const run = runChild(script('core-export.mjs'), [format, n, `${plain}.ours.gz`])
    rows.push({ format, n, gzipMs, run, gzipBytes: statSync(`${plain}.gz`).size })
    rmSync(plain)
    rmSync(`${plain}.gz`)
    rmSync(`${plain}.ours.gz`)
    console.error(`${format} ${n}: ${fmt.s(run.ms)} s vs gzip -6 ${fmt.s(gzipMs)} s, RSS ${run.rssMb.toFixed(0)} MB`)
  }
}
const naive = naiveSizes.map((n) => {
  const run = runChild(script('naive-export.mjs'), [n, `${dir}naive.csv.gz`])
  rmSync(`${dir}naive.csv.gz`)
  return { n, run }
})

const table = rows.map(
  ({ format, n, gzipMs, run, gzipBytes }) =>
    `| ${format} | ${fmt.int(n)} | ${fmt.mb(run.uncompressedBytes)} | ${fmt.mb(run.bytes)} (gzip -6: ${fmt.mb(gzipBytes)}) | ` +
    `${fmt.s(run.ms)} | ${fmt.s(gzipMs)} | **${fmt.x(run.ms / gzipMs)}** | ${fmt.int(run.rows / (run.ms / 1000))} | ` +
    `${(run.uncompressedBytes / 1e6 / (run.ms / 1000)).toFixed(1)} | ${run.rssMb.toFixed(0)} |`,
)
const naiveTable = naive.map(({ n, run }) => `| ${fmt.int(n)} | ${fmt.s(run.ms)} | ${run.rssMb.toFixed(0)} |`)

writeSection(
  'core',
  `
## Core: in-memory source -> format -> gzip(6) -> file

Run: \`npm run bench -- core\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
Rows: the synthetic monthly statements of \`examples/statements.mjs\` (7 columns; memo text with
commas, quotes and newlines). Each export runs in its own child process; "gzip -6" is the system
\`gzip -6\` compressing the very bytes the export produced (written uncompressed first), timed in the
same run. Ratio = export wall time / \`gzip -6\` wall time. Peak RSS is the child's \`maxRSS\`.

| format | rows | uncompressed MB | gzipped MB | export s | gzip -6 s | ratio | rows/s | MB/s (uncompressed) | peak RSS MB |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${table.join('\n')}

The naive version (every row in an array, one \`csv-stringify\` string, \`gzipSync\`), for comparison:

| rows | wall s | peak RSS MB |
|---:|---:|---:|
${naiveTable.join('\n')}
`,
)
