// One ZIP writer candidate in this process: the sheet XML of <rows> statement rows, made in 64 KiB
// chunks as the XLSX format makes it, streamed into one deflated entry of a ZIP file.
//   node bench/xlsx-zip-run.mjs <candidate> <rows> <level> <out path> [<own zip.mjs>]
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { PassThrough } from 'node:stream'
import { performance } from 'node:perf_hooks'
import { statementRow } from '../examples/statements.mjs'

const [candidate, rowsArg, levelArg, path, ownModule] = process.argv.slice(2)
const rows = Number(rowsArg)
const level = Number(levelArg)
const escape = (text) => text.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'))
const cell = (ref, value) =>
  typeof value === 'number'
    ? `<c r="${ref}"><v>${value}</v></c>`
    : `<c r="${ref}" t="inlineStr"><is><t xml:space="preserve">${escape(String(value))}</t></is></c>`

/** The sheet's XML in ~64 KiB chunks. */
function* sheetChunks() {
  let text = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
  for (let i = 0; i < rows; i++) {
    const r = statementRow(i)
    const n = i + 1
    text += `<row r="${n}">${cell(`A${n}`, r.id)}${cell(`B${n}`, r.user_name)}${cell(`C${n}`, r.email)}${cell(`D${n}`, r.currency)}${cell(`E${n}`, Number(r.amount))}${cell(
      `F${n}`,
      r.posted_at.getTime() / 86_400_000 + 25_569,
    )}${cell(`G${n}`, r.memo)}</row>`
    if (text.length >= 65_536) {
      yield Buffer.from(text)
      text = ''
    }
  }
  yield Buffer.from(`${text}</sheetData></worksheet>`)
}

const out = createWriteStream(path)
let outBytes = 0
const write = async (chunk) => {
  outBytes += chunk.length
  if (!out.write(chunk)) await once(out, 'drain')
}
const started = performance.now()
const elu = performance.eventLoopUtilization()

if (candidate === 'own') {
  const { ZipWriter } = await import(ownModule)
  const pending = []
  const zip = new ZipWriter((chunk) => pending.push(chunk), { level })
  const flush = async () => {
    while (pending.length) await write(pending.shift())
  }
  zip.startEntry('xl/worksheets/sheet1.xml')
  for (const chunk of sheetChunks()) {
    if (!zip.write(chunk)) await zip.drain()
    await flush()
  }
  await zip.endEntry()
  zip.finish()
  await flush()
} else if (candidate === 'fflate' || candidate === 'fflate-async') {
  const { Zip, ZipDeflate, AsyncZipDeflate } = await import('fflate')
  const pending = []
  let finished
  const done = new Promise((resolve, reject) => (finished = { resolve, reject }))
  const zip = new Zip((error, data, final) => {
    if (error) return finished.reject(error)
    pending.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength))
    if (final) finished.resolve()
  })
  const file = candidate === 'fflate' ? new ZipDeflate('xl/worksheets/sheet1.xml', { level }) : new AsyncZipDeflate('xl/worksheets/sheet1.xml', { level })
  zip.add(file)
  const flush = async () => {
    while (pending.length) await write(pending.shift())
  }
  let previous
  for (const chunk of sheetChunks()) {
    if (previous) file.push(previous)
    previous = chunk
    await flush()
    if (candidate === 'fflate-async') await new Promise(setImmediate) // let the worker's results arrive
  }
  file.push(previous, true)
  zip.end()
  await done
  await flush()
} else if (candidate === 'yazl') {
  const { ZipFile } = await import('yazl')
  const zip = new ZipFile()
  const entry = new PassThrough({ highWaterMark: 256 * 1024 })
  zip.addReadStream(entry, 'xl/worksheets/sheet1.xml', { compressionLevel: level })
  zip.end()
  const piped = (async () => {
    for await (const chunk of zip.outputStream) await write(chunk)
  })()
  for (const chunk of sheetChunks()) if (!entry.write(chunk)) await once(entry, 'drain')
  entry.end()
  await piped
} else if (candidate === 'zip-stream') {
  const { default: ZipStream } = await import('zip-stream')
  const zip = new ZipStream({ zlib: { level } })
  const piped = (async () => {
    for await (const chunk of zip) await write(chunk)
  })()
  const entry = new PassThrough({ highWaterMark: 256 * 1024 })
  const added = new Promise((resolve, reject) => zip.entry(entry, { name: 'xl/worksheets/sheet1.xml' }, (error) => (error ? reject(error) : resolve())))
  for (const chunk of sheetChunks()) if (!entry.write(chunk)) await once(entry, 'drain')
  entry.end()
  await added
  zip.finish()
  await piped
} else {
  throw new Error(`unknown candidate ${candidate}`)
}
out.end()
await once(out, 'finish')
const usage = process.resourceUsage()
console.log(
  JSON.stringify({
    ms: performance.now() - started,
    bytes: outBytes,
    cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000,
    mainBusy: performance.eventLoopUtilization(elu).utilization,
    rssMb: usage.maxRSS / 1024,
  }),
)
