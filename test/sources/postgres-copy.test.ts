import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { csv, exportStream, fileSink, postgresCopySource, postgresSource } from '../../src/index.js'
import { inlineParameters } from '../../src/sources/postgres/copy.js'
import { createStatements, databaseUrl, otherBackends, testPool } from '../fixtures/postgres.js'
import { collector, listDir, tempDir } from '../helpers.js'

const STATEMENTS = 'se_copy_statements'
const ROWS = 30_000

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await createStatements(pool, STATEMENTS, ROWS)
  await pool.end()
})

describe('postgresCopySource', () => {
  it('writes the same CSV as the cursor source for the same query, and counts rows from the COPY tag', async () => {
    const pool = testPool()
    const text = `select id, user_name, email, currency, amount, memo from ${STATEMENTS} where id <= $1 order by id`
    const copied = collector()
    const copyResult = await exportStream({ source: postgresCopySource({ pool, text, values: [25_000] }), gzip: true, sink: copied })
    const cursor = collector()
    await exportStream({ source: postgresSource({ pool, text, values: [25_000] }), format: csv(), gzip: true, sink: cursor })
    const copyText = gunzipSync(copied.buffer()).toString()
    expect(copyText).toBe(gunzipSync(cursor.buffer()).toString())
    expect(copyText.startsWith('id,user_name,email,currency,amount,memo\n')).toBe(true)
    expect(copyResult.rows).toBe(25_000)
    expect(copyResult.uncompressedBytes).toBe(Buffer.byteLength(copyText))
    expect(pool.totalCount).toBe(pool.idleCount)
  })

  it('leaves the header out when asked, and writes a file', async () => {
    const pool = testPool()
    const dir = await tempDir()
    const path = join(dir, 'out.csv')
    const result = await exportStream({
      source: postgresCopySource({ pool, text: 'select 1 as a, $1 as b', values: ["it's"], header: false }),
      sink: fileSink({ path }),
    })
    expect(result.rows).toBe(1)
    expect(await listDir(dir)).toEqual(['out.csv'])
  })

  it('rejects a format stage: the bytes are CSV already', async () => {
    const pool = testPool()
    const error = await exportStream({ source: postgresCopySource({ pool, text: 'select 1' }), format: csv(), sink: collector() }).catch((e) => e)
    expect(error.code).toBe('ERR_INVALID_OPTION')
    expect(error.message).toContain('Expected `format` to be undefined')
  })

  it('abort mid-COPY: ERR_ABORTED, no partial file, the connection is replaced and the pool works', async () => {
    const pool = testPool(2)
    const dir = await tempDir()
    const controller = new AbortController()
    const error = await exportStream({
      source: postgresCopySource({ pool, text: `select s.*, pg_sleep(0) from ${STATEMENTS} s, generate_series(1, 20)` }),
      gzip: true,
      sink: fileSink({ path: join(dir, 'out.csv.gz') }),
      signal: controller.signal,
      progressIntervalMs: 1,
      onProgress: (p) => {
        if (p.uncompressedBytes > 1_000_000) controller.abort()
      },
    }).catch((e) => e)
    expect(error.code).toBe('ERR_ABORTED')
    expect(await listDir(dir)).toEqual([])
    await expect.poll(() => pool.totalCount).toBe(pool.idleCount)
    await expect.poll(async () => (await otherBackends(pool)).filter((a) => a.query.includes('COPY'))).toEqual([])
    expect((await pool.query('select 3 as n')).rows[0].n).toBe(3)
  })

  it('a bad query rejects with ERR_SOURCE and the Postgres code', async () => {
    const pool = testPool()
    const dir = await tempDir()
    const error = await exportStream({
      source: postgresCopySource({ pool, text: `select nope from ${STATEMENTS}` }),
      sink: fileSink({ path: join(dir, 'x.csv') }),
    }).catch((e) => e)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.cause.code).toBe('42703')
    expect(await listDir(dir)).toEqual([])
    await expect.poll(() => pool.totalCount).toBe(pool.idleCount)
    expect((await pool.query('select 4 as n')).rows[0].n).toBe(4)
  })
})

describe('inlineParameters', () => {
  const lit = (n: number) => `<${n}>`
  it('replaces placeholders outside strings, names and comments', () => {
    expect(inlineParameters('select $1, $2::int', 2, lit)).toBe('select <1>, <2>::int')
    expect(inlineParameters(`select '$1', "$1", $1 -- $1\n, /* $1 */ $2`, 2, lit)).toBe(`select '$1', "$1", <1> -- $1\n, /* $1 */ <2>`)
    expect(inlineParameters(`select 'it''s $1', E'\\' $1', $1`, 1, lit)).toBe(`select 'it''s $1', E'\\' $1', <1>`)
    expect(inlineParameters('select $q$ $1 $q$, $$ $2 $$, $1', 1, lit)).toBe('select $q$ $1 $q$, $$ $2 $$, <1>')
  })
  it("follows PostgreSQL's lexer: nested comments, CR line ends, names with $, E strings", () => {
    expect(inlineParameters('select 1 /* /* */ $1 */, $2', 2, lit)).toBe('select 1 /* /* */ $1 */, <2>')
    expect(inlineParameters('select 1 -- note\r, $1', 1, lit)).toBe('select 1 -- note\r, <1>')
    expect(inlineParameters('select a$1, $1', 1, lit)).toBe('select a$1, <1>')
    expect(inlineParameters(`select some'x', e'\\' $1', $1`, 1, lit)).toBe(`select some'x', e'\\' $1', <1>`)
    expect(inlineParameters(`select U&'$1', $1`, 1, lit)).toBe(`select U&'$1', <1>`)
    expect(inlineParameters('select $a$ $1 $b$ $a$, $1', 1, lit)).toBe('select $a$ $1 $b$ $a$, <1>')
  })
  it('a value inside a nested comment stays inert (it used to close the comment and run as SQL)', async () => {
    const pool = testPool()
    const sink = collector()
    const injected = '*/ 1 as x, (select 42) as leaked /*'
    await exportStream({ source: postgresCopySource({ pool, text: 'select 1 as a /* /* */ $1 */', values: [injected] }), sink })
    expect(sink.buffer().toString()).toBe('a\n1\n')
  })
  it('rejects a placeholder without a value', () => {
    expect(() => inlineParameters('select $2', 1, lit)).toThrow('Expected `values` to be an array with a value for $2')
  })
  it('escapes values so they cannot break out of the literal', async () => {
    const pool = testPool()
    const sink = collector()
    await exportStream({
      source: postgresCopySource({ pool, text: 'select $1::text as v, $2::int as n, $3::text as z', values: ["'); drop table x; --", 42, null] }),
      sink,
    })
    expect(sink.buffer().toString()).toBe(`v,n,z\n'); drop table x; --,42,\n`)
  })
})
