// Split suite: 1M rows of CSV + gzip(6) into one file against the same rows split into 8 parts
// (a manifest, a SHA-256 per part), interleaved rounds, medians.
import { mkdirSync, rmSync } from 'node:fs'
import { fmt, machine, median, runChild, writeSection } from './lib.mjs'

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000)
const rounds = Number(process.env.BENCH_ROUNDS ?? 5)
const dir = new URL('./.data/split/', import.meta.url).pathname
const script = new URL('./split-export.mjs', import.meta.url).pathname
const runs = { one: [], split: [] }
for (let round = 0; round < rounds; round++) {
  for (const kind of round % 2 ? ['split', 'one'] : ['one', 'split']) {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    const args = kind === 'one' ? [rows, `${dir}statements.csv.gz`] : [rows, `${dir}statements.csv.gz`, rows / 8]
    runs[kind].push(runChild(script, args))
  }
}
rmSync(dir, { recursive: true, force: true })
const one = median(runs.one)
const split = median(runs.split)
const cpu = (kind) => median(runs[kind].map((run) => ({ ...run, ms: run.cpuMs }))).cpuMs
const line = (name, run, kind) =>
  `| ${name} | ${run.parts} | ${fmt.mb(run.bytes)} | ${fmt.s(run.ms)} | ${fmt.x(run.ms / one.ms)} | ${fmt.s(cpu(kind))} | ${fmt.x(cpu(kind) / cpu('one'))} | ${run.rssMb.toFixed(0)} |`
console.error(
  `one ${fmt.s(one.ms)} s, split ${fmt.s(split.ms)} s (${fmt.x(split.ms / one.ms)}), CPU ${fmt.x(cpu('split') / cpu('one'))}, RSS ${one.rssMb.toFixed(0)} / ${split.rssMb.toFixed(0)} MB`,
)
writeSection(
  'split',
  `## Split output: ${fmt.int(rows)} rows -> CSV -> gzip(6) -> files

Run: \`npm run bench -- split\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}.
Rows: the statements of \`examples/statements.mjs\`, in memory. "one file" is a plain export to one
\`fileSink\`; "8 parts" is the same with \`split: { rows: ${fmt.int(rows / 8)} }\` (8 files, each with its
header and its own gzip stage, a SHA-256 per part, and the manifest). Medians of ${rounds} interleaved
rounds, each export in its own child process; CPU is the child's user + system time (steadier than
wall time on this shared 2-core machine, where two runs of the same export differ by up to 20%);
peak RSS is the child's.

| export | files | MB stored | wall s | vs one file | CPU s | vs one file | peak RSS MB |
|---|---:|---:|---:|---:|---:|---:|---:|
${line('one file', one, 'one')}
${line('8 parts + manifest', split, 'split')}`,
)
