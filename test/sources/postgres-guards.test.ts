// The session guards of every Postgres source: timeouts the server enforces, a read-only session,
// the export's name in pg_stat_activity; and a caller's connection given back with its own settings.
import type { Readable } from 'node:stream'
import pg from 'pg'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { csv, exportStream, postgresCopySource, postgresKeysetSource, postgresSource, type ExportError, type SourceExtras } from '../../src/index.js'
import * as dist from '../../dist/index.js'
import { createStatements, databaseUrl, otherBackends, testPool } from '../fixtures/postgres.js'
import { collector } from '../helpers.js'

const TABLE = 'se_guard_statements'
type RowSource = Readable & SourceExtras

beforeAll(async () => {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 })
  await createStatements(pool, TABLE, 20_000)
  await pool.query('create sequence if not exists se_guard_seq')
  await pool.end()
})

const run = (source: RowSource) => exportStream({ source, ...(source.preformatted ? {} : { format: csv() }), sink: collector() })
const failure = (source: RowSource) =>
  run(source).then(
    () => undefined,
    (error: ExportError) => error,
  )

/** The CSV lines an export writes, without the header. */
async function lines(source: RowSource, api: Pick<typeof dist, 'exportStream' | 'csv'> = { exportStream, csv }): Promise<string[]> {
  const sink = collector()
  await api.exportStream({ source, ...(source.preformatted ? {} : { format: api.csv() }), sink })
  return sink.buffer().toString().split('\n').slice(1, -1)
}

async function withClient<T>(pool: pg.Pool, use: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  try {
    return await use(client)
  } finally {
    client.release()
  }
}

const settingsOf = async (client: pg.PoolClient) =>
  (
    await client.query<Record<string, string>>(
      `select current_setting('statement_timeout') as statement_timeout, current_setting('lock_timeout') as lock_timeout,
        current_setting('application_name') as application_name, current_setting('default_transaction_read_only') as read_only`,
    )
  ).rows[0]

describe('timeouts the server enforces', () => {
  it('statementTimeoutMs cancels a slow query on the cursor and on COPY (ERR_SOURCE, SQLSTATE 57014); no backend is left busy', async () => {
    const pool = testPool()
    const text = 'select g as id, pg_sleep(case when g = 2 then 5 else 0 end) as s from generate_series(1, 3) g'
    // (Each made when its turn comes: a source starts its query when it is made.)
    for (const source of [
      () => postgresSource({ pool, text, statementTimeoutMs: 300 }), // csv(): PostgreSQL's COPY writes the rows
      () => postgresSource({ pool, text, statementTimeoutMs: 300, batchSize: 1 }).map((row: Record<string, unknown>) => row), // the cursor
      () => postgresCopySource({ pool, text, statementTimeoutMs: 300 }),
    ]) {
      const started = Date.now()
      const error = await failure(source() as RowSource)
      expect(error).toMatchObject({ code: 'ERR_SOURCE', cause: { code: '57014' } })
      expect(Date.now() - started).toBeLessThan(3000)
    }
    expect((await otherBackends(pool)).filter((b) => b.state !== 'idle')).toEqual([])
  })

  it('lockTimeoutMs gives up on a locked table (55P03) instead of queueing behind the lock', async () => {
    const pool = testPool()
    const holder = await pool.connect()
    try {
      await holder.query('begin')
      await holder.query(`lock table ${TABLE} in access exclusive mode`)
      const error = await failure(postgresKeysetSource({ pool, table: TABLE, lockTimeoutMs: 200 }))
      expect(error).toMatchObject({ code: 'ERR_SOURCE', cause: { code: '55P03' } })
    } finally {
      await holder.query('rollback')
      holder.release()
    }
  })

  it('refuses guards that are not what PostgreSQL takes (ERR_INVALID_OPTION), before connecting', () => {
    const pool = testPool()
    for (const bad of [
      { statementTimeoutMs: -1 },
      { lockTimeoutMs: 1.5 },
      { applicationName: 'export für Ärzte' },
      { applicationName: 'x'.repeat(64) },
      { readOnly: 'yes' },
    ])
      expect(() => postgresSource({ pool, text: 'select 1', ...(bad as object) })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })
})

describe('a read-only session', () => {
  it('a query that writes fails (25006) by default; readOnly: false lets it', async () => {
    const pool = testPool()
    const text = "select nextval('se_guard_seq') as n"
    expect(await failure(postgresSource({ pool, text }))).toMatchObject({ code: 'ERR_SOURCE', cause: { code: '25006' } })
    expect((await run(postgresSource({ pool, text, readOnly: false }))).rows).toBe(1)
  })
})

describe("the caller's connection keeps its own settings", () => {
  it('a pooled connection: named for the export while it runs, given back as it was (after a success and after a timeout)', async () => {
    // The pool's own settings (sent when each connection starts), as a service configures them.
    const url = new URL(databaseUrl())
    url.searchParams.set('application_name', 'billing-api')
    const pool = new pg.Pool({ connectionString: url.toString(), max: 1, statement_timeout: 7000 })
    onTestFinished(() => pool.end())
    const before = await withClient(pool, settingsOf)
    expect(before).toMatchObject({ statement_timeout: '7s', application_name: 'billing-api' })
    const text = `select current_setting('application_name') as name, current_setting('statement_timeout') as timeout from ${TABLE} limit 2`
    expect(await lines(postgresSource({ pool, text, applicationName: 'stream-export:job-42', statementTimeoutMs: 60_000 }))).toEqual([
      'stream-export:job-42,1min',
      'stream-export:job-42,1min',
    ])
    expect(await withClient(pool, settingsOf)).toEqual(before)

    expect(await failure(postgresSource({ pool, text: 'select pg_sleep(5)', statementTimeoutMs: 200, lockTimeoutMs: 100 }))).toMatchObject({
      code: 'ERR_SOURCE',
    })
    // (A connection that failed is destroyed, not given back: the pool's next one has its settings.)
    expect(await withClient(pool, settingsOf)).toEqual(before)
  })

  it("without an applicationName the pool's own name stays; a connection without one is named stream-export", async () => {
    const named = testPool(1)
    const own = (await named.query<{ name: string }>(`select current_setting('application_name') as name`)).rows[0]!.name
    const text = `select current_setting('application_name') as name`
    expect(own).not.toBe('')
    expect(await lines(postgresSource({ pool: named, text }))).toEqual([own])
    const url = new URL(databaseUrl())
    url.searchParams.delete('application_name')
    expect(await lines(postgresSource({ connectionString: url.toString(), text }))).toEqual(['stream-export'])
  })

  it("a caller's client inside its transaction: its SET LOCAL is put back, and ends with the transaction as it should", async () => {
    const pool = testPool(1)
    const client = await pool.connect()
    try {
      await client.query('begin')
      await client.query("set local statement_timeout = '5s'")
      const rows = await lines(postgresSource({ client, text: `select current_setting('statement_timeout') as t`, statementTimeoutMs: 60_000 }))
      expect(rows).toEqual(['1min'])
      expect((await settingsOf(client))!.statement_timeout).toBe('5s')
      await client.query('commit')
      expect((await settingsOf(client))!.statement_timeout).toBe('0')
    } finally {
      client.release()
    }
  })

  it("a caller's client: its settings are put back even after a failed export", async () => {
    const pool = testPool(1)
    const client = await pool.connect()
    try {
      const before = await settingsOf(client)
      expect(await failure(postgresSource({ client, text: 'select pg_sleep(5)', statementTimeoutMs: 200 }))).toMatchObject({ code: 'ERR_SOURCE' })
      expect(await settingsOf(client)).toEqual(before)
    } finally {
      client.release()
    }
  })
})

describe('every Postgres source carries them', () => {
  it('cursor, COPY, keyset, sharded (each shard worker): the session is named and read-only', async () => {
    const pool = testPool()
    const applicationName = 'stream-export:every'
    const settings = `current_setting('application_name') as name, current_setting('default_transaction_read_only') as ro`
    const select = `select id, ${settings} from ${TABLE} where id <= 3000`
    const expected = Array.from({ length: 3000 }, () => `${applicationName},on`)
    const sources: Array<() => RowSource> = [
      () => postgresSource({ pool, text: `${select} order by id`, applicationName }),
      () => postgresSource({ pool, text: `${select} order by id`, applicationName }).map((row: Record<string, unknown>) => row),
      () => postgresCopySource({ pool, text: `${select} order by id`, applicationName }),
      () => postgresKeysetSource({ pool, select, applicationName }),
    ]
    // (The sharded source's workers run the built package.)
    const sharded = () => dist.postgresShardedSource({ connectionString: databaseUrl(), table: TABLE, select, shards: 2, applicationName })
    for (const [source, api] of [...sources.map((source) => [source, undefined] as const), [sharded, dist] as const]) {
      const rows = (await lines(source(), api)).map((line) => line.split(',').slice(1).join(','))
      expect(rows).toEqual(expected)
    }
  })
})
