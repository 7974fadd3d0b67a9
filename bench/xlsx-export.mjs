// One XLSX export in this process: <rows> in-memory statements -> an .xlsx file, by this library's
// xlsx() or by exceljs's streaming WorkbookWriter (inline strings, styles on: the same workbook);
// `-sheets`: the rows from three sources into three sheets of one workbook (exportWorkbook).
//   node bench/xlsx-export.mjs <ours|exceljs|ours-sheets|exceljs-sheets> <rows> <out path>
import { performance } from 'node:perf_hooks'
import { exportStream, exportWorkbook, fileSink, fromIterable, xlsx } from 'stream-export'
import { statements } from '../examples/statements.mjs'

const [impl, rowsArg, path] = process.argv.slice(2)
const rows = Number(rowsArg)
const started = performance.now()
let bytes
let sheets = 1
const third = Math.ceil(rows / 3)
const NAMES = ['Statements A', 'Statements B', 'Statements C']
if (impl === 'ours-sheets') {
  const sheetsOf = NAMES.map((name) => ({ name, source: () => fromIterable(statements(third)) }))
  const result = await exportWorkbook({ sheets: sheetsOf, sink: fileSink({ path }) })
  bytes = result.bytes
  sheets = result.sheets.reduce((n, sheet) => n + sheet.sheets.length, 0)
} else if (impl === 'exceljs-sheets') {
  const { default: ExcelJS } = await import('exceljs')
  const book = new ExcelJS.stream.xlsx.WorkbookWriter({ filename: path, useStyles: true, useSharedStrings: false })
  for (const name of NAMES) {
    const sheet = book.addWorksheet(name, { views: [{ state: 'frozen', ySplit: 1 }] })
    sheet.columns = ['id', 'user_name', 'email', 'currency', 'amount', 'posted_at', 'memo'].map((key) => ({ header: key, key }))
    sheet.getColumn('posted_at').numFmt = 'yyyy-mm-dd hh:mm:ss'
    for (const row of statements(third)) sheet.addRow(row).commit()
    sheet.commit()
  }
  await book.commit()
  const { statSync } = await import('node:fs')
  bytes = statSync(path).size
  sheets = NAMES.length
} else if (impl === 'ours') {
  const result = await exportStream({ source: fromIterable(statements(rows)), format: xlsx(), sink: fileSink({ path }) })
  bytes = result.bytes
  sheets = Math.ceil(rows / 1_048_575)
} else {
  const { default: ExcelJS } = await import('exceljs')
  const book = new ExcelJS.stream.xlsx.WorkbookWriter({ filename: path, useStyles: true, useSharedStrings: false })
  // exceljs does not roll over: a new sheet every 1,048,575 rows, as xlsx() does.
  let sheet
  const newSheet = () => {
    sheet?.commit()
    sheet = book.addWorksheet(sheets === 1 && !sheet ? 'Sheet1' : `Sheet1 (${++sheets})`, { views: [{ state: 'frozen', ySplit: 1 }] })
    sheet.columns = ['id', 'user_name', 'email', 'currency', 'amount', 'posted_at', 'memo'].map((key) => ({ header: key, key }))
    sheet.getColumn('posted_at').numFmt = 'yyyy-mm-dd hh:mm:ss'
  }
  newSheet()
  let inSheet = 0
  for (const row of statements(rows)) {
    if (inSheet === 1_048_575) {
      newSheet()
      inSheet = 0
    }
    sheet.addRow(row).commit()
    inSheet++
  }
  sheet.commit()
  await book.commit()
  const { statSync } = await import('node:fs')
  bytes = statSync(path).size
}
const usage = process.resourceUsage()
console.log(
  JSON.stringify({ ms: performance.now() - started, bytes, sheets, cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000, rssMb: usage.maxRSS / 1024 }),
)
