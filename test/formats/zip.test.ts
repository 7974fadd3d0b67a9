// The ZIP writer under the XLSX format, read back by independent readers: Python's zipfile
// (central directory, CRCs) and Info-ZIP's unzip (local headers and data descriptors too).
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ZipWriter } from '../../src/formats/xlsx/zip.js'
import { tempDir } from '../helpers.js'

const has = (command: string, args: string[]) => spawnSync(command, args, { stdio: 'ignore' }).status === 0
const python = has('python3', ['-c', 'import zipfile'])
const unzip = has('unzip', ['-v'])

/** Each entry's SHA-256 as Python's zipfile reads it, after its CRC check of every entry. */
function readWithPython(path: string): { bad: string | null; entries: Record<string, string>; zip64: boolean } {
  const script = `
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
entries = {i.filename: hashlib.sha256(z.read(i.filename)).hexdigest() for i in z.infolist()}
print(json.dumps({"bad": bad, "entries": entries, "zip64": any(i.extra[:2] == b"\\x01\\x00" for i in z.infolist())}))`
  return JSON.parse(execFileSync('python3', ['-c', script, path]).toString()) as ReturnType<typeof readWithPython>
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex')

/** An archive of two whole entries around a streamed one of `size` bytes (a sheet: repetitive text with some noise). */
async function writeArchive(path: string, size: number, forceZip64: boolean) {
  const chunks: Buffer[] = []
  const zip = new ZipWriter((chunk) => chunks.push(chunk), { forceZip64, date: new Date('2026-11-23T10:20:30Z') })
  zip.addFile('[Content_Types].xml', '<Types/>')
  zip.startEntry('xl/worksheets/sheet1.xml')
  const streamed: Buffer[] = []
  for (let written = 0; written < size;) {
    const chunk = Buffer.from(`<row r="${written}"><c t="inlineStr"><is><t>${randomBytes(6).toString('hex')} ünïcode</t></is></c></row>`.repeat(500))
    streamed.push(chunk)
    written += chunk.length
    if (!zip.write(chunk)) await zip.drain()
  }
  await zip.endEntry()
  zip.addFile('xl/workbook.xml', Buffer.from('<workbook/>'))
  zip.finish()
  await writeFile(path, Buffer.concat(chunks))
  return { sheet: Buffer.concat(streamed), bytes: chunks.reduce((n, c) => n + c.length, 0) }
}

describe.skipIf(!python || !unzip)(`ZipWriter${python && unzip ? '' : ' (skipped: python3 and unzip are needed to read the archives back)'}`, () => {
  for (const forceZip64 of [false, true]) {
    it(`${forceZip64 ? 'ZIP64 records (forced)' : 'plain records'}: every entry reads back byte for byte, CRCs checked by two readers`, async () => {
      const dir = await tempDir()
      const path = join(dir, 'book.zip')
      const { sheet, bytes } = await writeArchive(path, 3_000_000, forceZip64)
      expect((await readFile(path)).length).toBe(bytes)
      const read = readWithPython(path)
      expect(read.bad).toBeNull()
      expect(read.zip64).toBe(forceZip64)
      expect(read.entries).toEqual({
        '[Content_Types].xml': sha256('<Types/>'),
        'xl/worksheets/sheet1.xml': sha256(sheet),
        'xl/workbook.xml': sha256('<workbook/>'),
      })
      const test = spawnSync('unzip', ['-t', path])
      expect(test.stdout.toString()).toContain('No errors detected')
      expect(test.status).toBe(0)
      const listing = execFileSync('zipinfo', [path]).toString()
      expect(listing).toContain('26-Nov-23 10:20') // the entries' time
      // The ZIP64 end records are there exactly when asked for (or needed).
      const archive = await readFile(path)
      expect(archive.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(forceZip64)
    })
  }

  it('compresses off the main thread and keeps a bounded queue: write() says when to wait', async () => {
    const zip = new ZipWriter(() => {})
    zip.startEntry('big.xml')
    let refused = 0
    for (let i = 0; i < 64; i++) {
      if (!zip.write(Buffer.alloc(64 * 1024, i))) {
        refused++
        expect(zip.pendingBytes).toBeGreaterThan(0)
        await zip.drain()
      }
    }
    await zip.endEntry()
    expect(refused).toBeGreaterThan(0)
    expect(() => zip.write(Buffer.from('x'))).toThrow('No ZIP entry is open')
  })
})
