// What src/sources/postgres/pg-adapter.ts relies on beyond the documented API of pg, pg-query-stream,
// pg-cursor and pg-copy-streams, checked on real instances against the real server: after an
// upgrade that removes or renames one of them, these tests fail naming it (and the version
// installed), rather than an export degrading quietly (no column types, a dead connection reused).
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import copyStreams from 'pg-copy-streams'
import pgUtils from 'pg/lib/utils.js'
import QueryStream from 'pg-query-stream'
import type pg from 'pg'
import { describe, expect, it, onTestFinished } from 'vitest'
import { CopyOut, CursorStream, sqlLiteral, type PgCursor } from '../../src/sources/postgres/pg-adapter.js'
import type { PgField } from '../../src/sources/postgres/types.js'
import type { Row } from '../../src/core/types.js'
import { testPool } from '../fixtures/postgres.js'

/** The installed version of `name` (resolved from the package that depends on it). */
function version(name: string, from = import.meta.url): string {
  let dir = dirname(createRequire(from).resolve(name))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file) && (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === name) {
      return `${name} ${(JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version}`
    }
    if (dirname(dir) === dir) return `${name} (version unknown)`
    dir = dirname(dir)
  }
}

const PG = version('pg')
const QUERY_STREAM = version('pg-query-stream')
const CURSOR = version('pg-cursor', createRequire(import.meta.url).resolve('pg-query-stream'))
const COPY_STREAMS = version('pg-copy-streams')

/** Fails naming the member, its owner and the installed version when it is not of `type`. */
function expectMember(owner: string, object: unknown, name: string, type: 'function' | 'string' | 'number' | 'object'): void {
  const value = (object as Record<string, unknown> | undefined)?.[name]
  expect(
    typeof value,
    `${owner}${name} is ${typeof value}; src/sources/postgres/pg-adapter.ts relies on a ${type} there: the upgrade removed or renamed it`,
  ).toBe(type)
}

const TIMED_OUT = 'timed out'
/** What `promise` gives, or TIMED_OUT if it has not settled within 5 s (a callback pg never called). */
const within = <T>(promise: Promise<T>): Promise<T | typeof TIMED_OUT> =>
  Promise.race([promise, new Promise<typeof TIMED_OUT>((resolve) => setTimeout(() => resolve(TIMED_OUT), 5000).unref())])

async function client(): Promise<pg.PoolClient> {
  const connection = await testPool(1).connect()
  onTestFinished(() => connection.release())
  return connection
}

/** The adapter's protected members, exposed; records the row descriptions it was given. */
class Probe extends CursorStream {
  described: PgField[][] = []
  protected override describeFields(fields: PgField[]): PgField[] {
    this.described.push(fields)
    return fields.map((field) => ({ ...field, name: `${field.name}_renamed` }))
  }
  page(rows: number): Promise<Row[]> {
    return new Promise((resolve, reject) => this.readPage(rows, (error, page) => (error ? reject(error) : resolve(page))))
  }
  get failed(): boolean {
    return this.cursorFailed
  }
  get fields(): PgField[] {
    return this.describedFields
  }
}

describe('pg-adapter: pg-query-stream and pg-cursor', () => {
  it('a QueryStream has its cursor and a per-instance row-description handler; the Cursor has read, state and _result.fields', async () => {
    const stream = new QueryStream('select 1 as one', [], { batchSize: 10 })
    expectMember(`${QUERY_STREAM}: QueryStream#`, stream, 'cursor', 'object')
    // QueryStream binds the cursor's protocol handlers to each instance: the adapter replaces this one.
    expect(Object.hasOwn(stream, 'handleRowDescription'), `${QUERY_STREAM}: QueryStream no longer sets handleRowDescription on each instance`).toBe(true)
    expectMember(`${QUERY_STREAM}: QueryStream#`, stream, 'handleRowDescription', 'function')
    const cursor = (stream as unknown as { cursor: Partial<PgCursor> }).cursor
    expectMember(`${CURSOR}: Cursor#`, cursor, 'read', 'function')
    expectMember(`${CURSOR}: Cursor#`, cursor, 'state', 'string')
    expectMember(`${CURSOR}: Cursor#`, cursor, '_result', 'object')
    expect(Array.isArray(cursor._result?.fields), `${CURSOR}: Cursor#_result.fields is not an array`).toBe(true)
    expect(Array.isArray(cursor._queue), `${CURSOR}: Cursor#_queue (the reads asked for before the row description) is not an array`).toBe(true)
    stream.destroy()
  })

  it('pg hands the row description to the replaced handler: the rows and _result.fields carry the names it returns; pages come from cursor.read', async () => {
    const conn = await client()
    const stream = new Probe('select i as n, i * 2 as n from generate_series(1, 5) i', [], { batchSize: 2 })
    conn.query(stream as never)
    const first = await stream.page(3)
    expect(stream.described, `${PG} / ${QUERY_STREAM}: the row description never reached the instance's handleRowDescription`).toHaveLength(1)
    expect(stream.described[0]!.map((field) => [field.name, typeof field.dataTypeID, typeof field.dataTypeModifier])).toEqual([
      ['n', 'number', 'number'],
      ['n', 'number', 'number'],
    ])
    expect(
      stream.fields.map((field) => field.name),
      `${CURSOR}: Cursor#_result.fields does not hold the described fields`,
    ).toEqual(['n_renamed', 'n_renamed'])
    expect(first, `${CURSOR}: Cursor#read(rows) did not give a page of rows built from the described names`).toEqual([
      { n_renamed: 2 },
      { n_renamed: 4 },
      { n_renamed: 6 },
    ])
    expect(await stream.page(3)).toHaveLength(2)
    expect(stream.failed).toBe(false)
    stream.destroy()
    await new Promise((resolve) => stream.once('close', resolve))
    expect((await conn.query('select 1 as ok')).rows).toEqual([{ ok: 1 }])
  })

  it("a failed query leaves the cursor in state 'error' (the connection may be dead: nothing to close)", async () => {
    const conn = await client()
    const stream = new Probe('select 1 / (i - 3) from generate_series(1, 5) i', [], { batchSize: 10 })
    conn.query(stream as never)
    await expect(stream.page(10)).rejects.toThrow('division by zero')
    expect((stream as unknown as { cursor: PgCursor }).cursor.state, `${CURSOR}: Cursor#state after a failed query`).toBe('error')
    expect(stream.failed).toBe(true)
    stream.destroy()
    expect((await conn.query('select 1 as ok')).rows).toEqual([{ ok: 1 }])
  })
})

describe('pg-adapter: pg-copy-streams', () => {
  it('a COPY TO stream has the protocol callbacks pg calls (handleError, handleCommandComplete) and rowCount', () => {
    const stream = copyStreams.to('COPY (select 1) TO STDOUT')
    expectMember(`${COPY_STREAMS}: CopyToStreamQuery#`, stream, 'submit', 'function')
    expectMember(`${COPY_STREAMS}: CopyToStreamQuery#`, stream, 'handleError', 'function')
    expectMember(`${COPY_STREAMS}: CopyToStreamQuery#`, stream, 'handleCommandComplete', 'function')
    expectMember(`${COPY_STREAMS}: CopyToStreamQuery#`, stream, 'rowCount', 'number')
  })

  it('pg calls handleCommandComplete (the row count) and then handleReadyForQuery on a submitted COPY', async () => {
    const conn = await client()
    const copy = new CopyOut('COPY (select i from generate_series(1, 3) i) TO STDOUT')
    const chunks: Buffer[] = []
    copy.stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    conn.query(copy as never)
    await new Promise((resolve) => copy.stream.once('end', resolve))
    expect(await within(copy.completed), `${PG}: the client never called handleReadyForQuery on the submitted COPY`).not.toBe(TIMED_OUT)
    expect(Buffer.concat(chunks).toString()).toBe('1\n2\n3\n')
    expect(copy.stream.rowCount, `${PG} / ${COPY_STREAMS}: handleCommandComplete did not set rowCount from the command tag`).toBe(3)
    expect((await conn.query('select 1 as ok')).rows).toEqual([{ ok: 1 }])
  })

  it('pg calls handleError on a submitted COPY that fails: the stream errors and the connection is usable again', async () => {
    const conn = await client()
    const copy = new CopyOut('COPY (select 1 / 0) TO STDOUT')
    const failed = new Promise<Error>((resolve) => copy.stream.once('error', resolve))
    copy.stream.resume() // pg-copy-streams reads the connection only while its stream is read
    conn.query(copy as never)
    const error = await within(failed)
    expect(error === TIMED_OUT ? error : error.message, `${PG}: the client never called handleError on the failed COPY`).toContain('division by zero')
    expect((await conn.query('select 1 as ok')).rows).toEqual([{ ok: 1 }])
  })
})

describe('pg-adapter: pg/lib/utils.js', () => {
  it('prepareValue converts values as pg sends parameters; sqlLiteral makes of them literals the server reads as the same values', async () => {
    expectMember(`${PG}: pg/lib/utils.js `, pgUtils, 'prepareValue', 'function')
    const conn = await client()
    // Each value with the type the query reads it as, through a parameter and through its literal.
    const values: Array<[unknown, string]> = [
      [null, 'text'],
      ['it\'s a "quote" \\ and $1', 'text'],
      [42, 'int4'],
      [12345678901234567890n, 'numeric'],
      [true, 'bool'],
      [new Date('2026-02-01T12:34:56.789Z'), 'timestamptz'],
      [Buffer.from([0, 255, 16]), 'bytea'],
      [[1, null, 'two'], 'text[]'],
      [{ nested: { ok: false } }, 'jsonb'],
      [{ toPostgres: () => 'from toPostgres' }, 'text'],
    ]
    for (const [value, type] of values) {
      const literal = sqlLiteral(value)
      const viaParameter = (await conn.query({ text: `select $1::${type} as v`, values: [value] })).rows
      const viaLiteral = (await conn.query({ text: `select (${literal})::${type} as v` })).rows
      expect(viaLiteral, `${PG}: pg/lib/utils.js prepareValue: ${literal} is not what the parameter ${String(value)} becomes`).toEqual(viaParameter)
    }
  })
})
