import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
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
