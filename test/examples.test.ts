import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync, gzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import { stringify } from 'csv-stringify/sync'
import { describe, expect, it } from 'vitest'
import { statementRow } from '../examples/statements.mjs'
import { tempDir } from './helpers.js'

const run = promisify(execFile)
const examples = new URL('../examples/', import.meta.url).pathname

// Examples import 'stream-export' itself (the built dist/, as a user would): `npm test` builds first.
describe('examples', () => {
  it('demo exports statements to out/statements.csv.gz and prints the figures', async () => {
    const cwd = await tempDir()
    const { stdout } = await run(process.execPath, [join(examples, 'demo.mjs'), '5000'], { cwd })
    expect(stdout).toContain('exported 5,000 rows to out/statements.csv.gz')
    expect(stdout).toMatch(/peak RSS \d+ MB/)
    const records = parse(gunzipSync(await readFile(join(cwd, 'out/statements.csv.gz'))), { columns: true })
    expect(records).toHaveLength(5000)
    const row = statementRow(4321)
    expect(records[4321]).toEqual({ ...row, id: String(row.id), posted_at: row.posted_at.toISOString() })
  })
})

describe('examples/mask-emails', () => {
  it('masks the e-mails of a gzipped CSV into JSON Lines', async () => {
    const dir = await tempDir()
    const rows = Array.from({ length: 20_000 }, (_, i) => statementRow(i))
    await writeFile(join(dir, 'users.csv.gz'), gzipSync(stringify(rows, { header: true, cast: { date: (d: Date) => d.toISOString() } })))
    const { stdout } = await run(process.execPath, [join(examples, 'mask-emails.mjs'), join(dir, 'users.csv.gz'), join(dir, 'masked.jsonl.gz')])
    expect(JSON.parse(stdout).rows).toBe(20_000)
    const out = gunzipSync(await readFile(join(dir, 'masked.jsonl.gz'))).toString().trim().split('\n').map((l) => JSON.parse(l))
    expect(out).toHaveLength(20_000)
    for (const [i, row] of out.entries()) {
      const email = rows[i].email
      expect(row.email).toBe(`${email[0]}***${email.slice(email.indexOf('@'))}`)
      expect(row.memo).toBe(rows[i].memo)
    }
    expect(out.some((r) => r.email.includes(rows[0].email.split('@')[0].slice(1)))).toBe(false)
  })
})
