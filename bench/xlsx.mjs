// XLSX suite: (1) the ZIP writer candidates on the same sheet XML; (2) xlsx() against exceljs's
// streaming WorkbookWriter on 100k, 1M and 5M statement rows (five sheets: past Excel's 1,048,576
// rows). Each run in its own process (its own peak RSS), rounds interleaved, medians.
import { mkdirSync, rmSync } from 'node:fs'
import { buildSync } from 'esbuild'
import { fmt, machine, median, runChild, writeSection } from './lib.mjs'

const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
const zipRows = Number(process.env.BENCH_ZIP_ROWS ?? 300_000)
const rows = Number(process.env.BENCH_ROWS ?? 1_000_000)
const bigRows = Number(process.env.BENCH_BIG_ROWS ?? 5_000_000)
const smallRows = Number(process.env.BENCH_SMALL_ROWS ?? 100_000)
const dir = new URL('./.data/xlsx/', import.meta.url).pathname
rmSync(dir, { recursive: true, force: true })
mkdirSync(dir, { recursive: true })

// Our ZIP writer is internal: bundled from the source for this comparison.
const own = `${dir}zip.mjs`
buildSync({
  entryPoints: [new URL('../src/formats/xlsx/zip.ts', import.meta.url).pathname],
  bundle: true,
  platform: 'node',
  format: 'esm',
  outfile: own,
  logLevel: 'error',
})
const zipScript = new URL('./xlsx-zip-run.mjs', import.meta.url).pathname
const candidates = ['own', 'yazl', 'zip-stream', 'fflate', 'fflate-async']
const zipRuns = Object.fromEntries(candidates.map((c) => [c, []]))
for (let round = 0; round < rounds; round++) {
  for (const candidate of round % 2 ? [...candidates].reverse() : candidates)
    zipRuns[candidate].push(runChild(zipScript, [candidate, zipRows, 6, `${dir}${candidate}.zip`, own]))
}
const zipLines = candidates.map((candidate) => {
  const run = median(zipRuns[candidate])
  return `| ${candidate} | ${fmt.s(run.ms)} | ${fmt.s(run.cpuMs)} | ${(run.mainBusy * 100).toFixed(0)}% | ${run.rssMb.toFixed(0)} | ${fmt.mb(run.bytes)} |`
})
const levels = [1, 3, 6, 9].map((level) => {
  const run = median(Array.from({ length: rounds }, () => runChild(zipScript, ['own', zipRows, level, `${dir}own-${level}.zip`, own])))
  return `| ${level} | ${fmt.s(run.ms)} | ${fmt.mb(run.bytes)} |`
})

const script = new URL('./xlsx-export.mjs', import.meta.url).pathname
const runs = { ours: [], exceljs: [] }
for (let round = 0; round < rounds; round++) {
  for (const impl of round % 2 ? ['exceljs', 'ours'] : ['ours', 'exceljs']) runs[impl].push(runChild(script, [impl, rows, `${dir}${impl}.xlsx`]))
}
// Three sources into three sheets of one workbook, the same rows in all.
const multi = { 'ours-sheets': [], 'exceljs-sheets': [] }
for (let round = 0; round < rounds; round++) {
  for (const impl of round % 2 ? ['exceljs-sheets', 'ours-sheets'] : ['ours-sheets', 'exceljs-sheets'])
    multi[impl].push(runChild(script, [impl, rows, `${dir}${impl}.xlsx`]))
}
const sheetsOurs = median(multi['ours-sheets'])
const sheetsExceljs = median(multi['exceljs-sheets'])
const small = Object.fromEntries(['ours', 'exceljs'].map((impl) => [impl, runChild(script, [impl, smallRows, `${dir}${impl}-small.xlsx`])]))
const big = Object.fromEntries(['ours', 'exceljs'].map((impl) => [impl, runChild(script, [impl, bigRows, `${dir}${impl}-big.xlsx`])]))
rmSync(dir, { recursive: true, force: true })
const ours = median(runs.ours)
const exceljs = median(runs.exceljs)
console.error(
  `xlsx ${fmt.s(ours.ms)} s / ${ours.rssMb.toFixed(0)} MB, exceljs ${fmt.s(exceljs.ms)} s / ${exceljs.rssMb.toFixed(0)} MB; ${fmt.int(bigRows)} rows ${fmt.s(big.ours.ms)} s / ${big.ours.rssMb.toFixed(0)} MB against ${fmt.s(big.exceljs.ms)} s / ${big.exceljs.rssMb.toFixed(0)} MB`,
)
const line = (name, n, run, baseline) =>
  `| ${name} | ${fmt.int(n)} | ${run.sheets} | ${fmt.s(run.ms)} | ${fmt.x(run.ms / baseline.ms)} | ${fmt.s(run.cpuMs)} | ${run.rssMb.toFixed(0)} | ${fmt.mb(run.bytes)} |`
const EXCELJS = 'exceljs 4.4.0 stream.xlsx.WorkbookWriter (inline strings, styles)'
writeSection(
  'xlsx',
  `## XLSX: statement rows -> an Excel workbook file

Machine: ${machine()}. Each run in its own process; median of ${rounds} interleaved rounds at
${fmt.int(rows)} rows, the ${fmt.int(smallRows)}- and ${fmt.int(bigRows)}-row runs once. Past
1,048,575 rows both start a new sheet (exceljs by the benchmark's hand). \`node bench/run.mjs xlsx\`
rewrites this section.

| writer | rows | sheets | wall s | vs exceljs | CPU s | peak RSS MB | file MB |
|---|---|---|---|---|---|---|---|
${line(EXCELJS, smallRows, small.exceljs, small.exceljs)}
${line('stream-export xlsx()', smallRows, small.ours, small.exceljs)}
${line(EXCELJS, rows, exceljs, exceljs)}
${line('stream-export xlsx()', rows, ours, exceljs)}
${line(EXCELJS, bigRows, big.exceljs, big.exceljs)}
${line('stream-export xlsx()', bigRows, big.ours, big.exceljs)}

Several sheets: the same ${fmt.int(rows)} rows from three sources into three sheets of one workbook
(\`exportWorkbook\`; exceljs: three \`addWorksheet\` in turn), median of ${rounds} rounds. One sheet is
written at a time: the peak is a one-sheet export's.

| writer | rows | sheets | wall s | vs exceljs | CPU s | peak RSS MB | file MB |
|---|---|---|---|---|---|---|---|
${line(EXCELJS, rows, sheetsExceljs, sheetsExceljs)}
${line('stream-export exportWorkbook()', rows, sheetsOurs, sheetsExceljs)}

### The ZIP writer under it: ${fmt.int(zipRows)} rows of sheet XML into one deflated entry (level 6)

The same XML, made in 64 KiB chunks as xlsx() makes it, into each candidate; "main thread" is the
event loop's utilisation (the share of the wall time the main thread was busy).

| candidate | wall s | CPU s | main thread | peak RSS MB | file MB |
|---|---|---|---|---|---|
${zipLines.join('\n')}

Our writer at each deflate level (the default is 6):

| level | wall s | file MB |
|---|---|---|
${levels.join('\n')}`,
)
