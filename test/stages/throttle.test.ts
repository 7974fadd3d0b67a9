// maxRowsPerSecond / maxBytesPerSecond: the export keeps to its rate, and the source is read no
// faster (the database sends less), rather than a buffer filling behind the stage.
import { describe, expect, it } from 'vitest'
import * as dist from '../../dist/index.js'
import { csv, exportStream, fromIterable, jsonl, postgresCopySource, postgresSource, type ExportError } from '../../src/index.js'
import { databaseUrl, testPool } from '../fixtures/postgres.js'
import { collector } from '../helpers.js'

const ROWS = 200_000
const RATE = 50_000
const text = `select g as id, repeat('x', 100) as pad from generate_series(1, ${ROWS}) g`

describe('maxRowsPerSecond', () => {
  it('200,000 rows at 50,000 a second take no less than 4 s, and the rows read from PostgreSQL follow the rate', async () => {
    const pool = testPool()
    for (const mapped of [false, true]) {
      // csv() of the query: PostgreSQL's COPY writes the rows; mapped: the cursor's row objects.
      const source = postgresSource({ pool, text, batchSize: 1000 })
      let read = 0
      source.on('data', (chunk: { encodedRows?: number; rows?: unknown[] }) => (read += chunk.encodedRows ?? chunk.rows?.length ?? 1))
      const started = performance.now()
      const ahead: number[] = []
      const sampler = setInterval(() => ahead.push(read - (RATE * (performance.now() - started)) / 1000), 250)
      try {
        const result = await exportStream({
          source: mapped ? source.map((row: Record<string, unknown>) => row) : source,
          format: csv(),
          sink: collector(),
          maxRowsPerSecond: RATE,
        })
        const seconds = (performance.now() - started) / 1000
        expect(result.rows).toBe(ROWS)
        // Never faster than the rate (how close it keeps to it is measured by bench/, not timed here).
        expect(seconds).toBeGreaterThan((ROWS / RATE) * 0.97)
        expect(seconds).toBeLessThan((ROWS / RATE) * 2)
      } finally {
        clearInterval(sampler)
      }
      // At no time were more rows read than the rate allowed, but for what a few buffers hold.
      expect(Math.max(...ahead)).toBeLessThan(15_000)
    }
  }, 30_000)

  it('an abort while the stage waits ends the export at once (ERR_ABORTED)', async () => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('enough')), 300)
    const started = performance.now()
    const error = await exportStream({
      source: fromIterable(Array.from({ length: 10_000 }, (_, id) => ({ id }))),
      format: jsonl(),
      sink: collector(),
      maxRowsPerSecond: 100,
      signal: controller.signal,
    }).catch((e: ExportError) => e)
    expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    expect(performance.now() - started).toBeLessThan(1500)
  })
})

describe('maxBytesPerSecond', () => {
  it('about 2 MB of output at 1 MB a second take no less than 2 s', async () => {
    const rows = Array.from({ length: 20_000 }, (_, id) => ({ id, pad: 'y'.repeat(92) }))
    const started = performance.now()
    const result = await exportStream({ source: fromIterable(rows), format: jsonl(), sink: collector(), maxBytesPerSecond: 1_000_000 })
    const seconds = (performance.now() - started) / 1000
    const expected = result.uncompressedBytes / 1_000_000
    expect(expected).toBeGreaterThan(1.9)
    expect(seconds).toBeGreaterThan(expected * 0.97)
    expect(seconds).toBeLessThan(expected * 2)
  })

  it('is refused where holding the export back would not make the database read less: a sharded source, a COPY by rows', async () => {
    const pool = testPool()
    const sharded = dist.postgresShardedSource({ connectionString: databaseUrl(), table: 'pg_class', key: 'oid', shards: 2 })
    const refused = await dist.exportStream({ source: sharded, format: dist.csv(), sink: collector(), maxRowsPerSecond: 10 }).catch((e: ExportError) => e)
    expect(refused).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('sharded source') })
    const copy = await exportStream({ source: postgresCopySource({ pool, text: 'select 1' }), sink: collector(), maxRowsPerSecond: 10 }).catch(
      (e: ExportError) => e,
    )
    expect(copy).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('maxBytesPerSecond') })
    const bytes = await exportStream({ source: postgresCopySource({ pool, text: 'select 1' }), sink: collector(), maxBytesPerSecond: 1000 })
    expect(bytes.rows).toBe(1)
  })

  it('refuses a rate that is not a positive number (ERR_INVALID_OPTION)', async () => {
    for (const bad of [{ maxRowsPerSecond: 0 }, { maxBytesPerSecond: -5 }, { maxRowsPerSecond: '100' }, { maxBytesPerSecond: Infinity }]) {
      const error = await exportStream({ source: fromIterable([{ a: 1 }]), format: csv(), sink: collector(), ...(bad as object) }).catch((e: ExportError) => e)
      expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION' })
    }
  })
})
