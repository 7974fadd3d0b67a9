// estimateExport(): the size of an export before running it, from the source's count and a sample
// through the export's own format and compression; nothing written, the source's connection released.
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { csv, estimateExport, exportStream, fromIterable, jsonl, parquet, postgresCopySource, postgresSource, type ExportError } from '../src/index.js'
import { createStatements, databaseUrl, otherBackends, testPool } from './fixtures/postgres.js'
import { collector } from './helpers.js'

const TABLE = 'se_estimate_statements'
const ROWS = 40_000

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await createStatements(pool, TABLE, ROWS)
  await pool.end()
})

describe('estimateExport', () => {
  it('rows counted, bytes and parts within a tenth of the real export (csv.gz, split by rows), the connection given back', async () => {
    const pool = testPool()
    const text = `select * from ${TABLE} order by id`
    const estimate = await estimateExport({
      source: postgresSource({ pool, text, count: 'exact' }),
      format: csv(),
      gzip: true,
      split: { rows: 15_000 },
      sampleRows: 5000,
    })
    const real = await exportStream({ source: postgresSource({ pool, text }), format: csv(), gzip: true, sink: collector() })
    expect(estimate.rows).toBe(ROWS)
    expect(estimate.parts).toBe(3)
    expect(estimate.sample.rows).toBe(5000)
    expect(Math.abs(estimate.bytes! / real.bytes - 1)).toBeLessThan(0.1)
    expect(Math.abs(estimate.uncompressedBytes! / real.uncompressedBytes - 1)).toBeLessThan(0.1)
    expect(estimate.durationMs).toBeGreaterThan(0)
    expect((await otherBackends(pool)).filter((backend) => backend.state !== 'idle')).toEqual([])
  })

  it("the planner's estimate when asked for one; no count: rows unknown, the sample still measured", async () => {
    const pool = testPool()
    const planned = await estimateExport({ source: postgresSource({ pool, text: `select * from ${TABLE}`, count: 'estimate' }), format: jsonl() })
    expect(Math.abs(planned.rows! / ROWS - 1)).toBeLessThan(0.2)
    const rows = Array.from({ length: 3000 }, (_, id) => ({ id }))
    const unknown = await estimateExport({ source: fromIterable(rows), format: jsonl(), sampleRows: 100 })
    expect(unknown).toMatchObject({ rows: undefined, bytes: undefined, parts: undefined, sample: { rows: 100 } })
  })

  it('an option the export refuses (gzip for Parquet): refused, and the source closed with its connection given back', async () => {
    const pool = testPool(1)
    const error = await estimateExport({ source: postgresSource({ pool, text: `select * from ${TABLE}` }), format: parquet(), gzip: true }).catch(
      (e: ExportError) => e,
    )
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION' })
    // The pool's one connection comes back (a source destroyed while connecting gives it back once connected).
    expect((await pool.query('select 1 as one')).rows).toEqual([{ one: 1 }])
  })

  it('a source of formatted bytes (COPY) and unknown options are refused (ERR_INVALID_OPTION)', async () => {
    const pool = testPool()
    for (const options of [
      { source: postgresCopySource({ pool, text: 'select 1' }) },
      { source: fromIterable([{ a: 1 }]), format: csv(), sink: collector() },
      { source: fromIterable([{ a: 1 }]), format: csv(), sampleRows: 0 },
    ])
      expect(await estimateExport(options as never).catch((e: ExportError) => e)).toMatchObject({ code: 'ERR_INVALID_OPTION' })
  })
})
