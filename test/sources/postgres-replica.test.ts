// maxReplicaLagMs: an export reading from a replica refuses to start (or warns) when the replica's
// replay is behind its primary by more than that. A real primary and streaming replica, made by
// the machine's PostgreSQL binaries (test/fixtures/replica.ts); replay paused to make it fall behind.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, exportStream, postgresSource, type ExportError } from '../../src/index.js'
import { startReplicaPair, type ReplicaPair } from '../fixtures/replica.js'
import { collector } from '../helpers.js'

let pair: ReplicaPair | undefined
let why = ''
let primary: pg.Pool
let replica: pg.Pool
beforeAll(async () => {
  const started = await startReplicaPair()
  if ('why' in started) {
    why = started.why
    // CI installs PostgreSQL and runs as root: there a pair that cannot be made is a failure.
    if (process.env.CI === 'true') throw new Error(`Cannot make a primary and a replica: ${why}`)
    return
  }
  pair = started
  primary = new pg.Pool({ connectionString: pair.primaryUrl, max: 2 })
  replica = new pg.Pool({ connectionString: pair.replicaUrl, max: 2 })
  await primary.query('create table orders (id int primary key, total numeric)')
  await primary.query('insert into orders select g, g * 1.5 from generate_series(1, 1000) g')
  await caughtUp()
}, 60_000)
afterAll(async () => {
  await replica?.end()
  await primary?.end()
  await pair?.stop()
})

async function caughtUp(): Promise<void> {
  const { lsn } = (await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0]!
  for (let i = 0; i < 100; i++) {
    const { rows } = await replica.query<{ done: boolean }>('select pg_last_wal_replay_lsn() >= $1::pg_lsn as done', [lsn])
    if (rows[0]!.done) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('the replica did not catch up')
}

const exportFrom = (pool: pg.Pool, options: { maxReplicaLagMs: number; onReplicaLag?: 'error' | 'warn' }) =>
  exportStream({ source: postgresSource({ pool, text: 'select * from orders order by id', ...options }), format: csv(), sink: collector() })

describe('maxReplicaLagMs', () => {
  it('a replica that has caught up exports; one whose replay is paused behind is refused (ERR_SOURCE) or, by option, warned about', async (context) => {
    if (!pair) return context.skip(`no primary and replica here: ${why}`)
    expect((await exportFrom(replica, { maxReplicaLagMs: 1000 })).rows).toBe(1000)
    await replica.query('select pg_wal_replay_pause()')
    try {
      await primary.query('insert into orders values (1001, 1)')
      await new Promise((resolve) => setTimeout(resolve, 1500))
      const refused = await exportFrom(replica, { maxReplicaLagMs: 1000 }).catch((error: ExportError) => error)
      expect(refused).toMatchObject({ code: 'ERR_SOURCE', message: expect.stringMatching(/replica is \d+ ms behind/) })
      expect(replica.totalCount).toBe(replica.idleCount) // its connection given back

      const warnings: Error[] = []
      const onWarning = (warning: Error) => warnings.push(warning)
      process.on('warning', onWarning)
      try {
        expect((await exportFrom(replica, { maxReplicaLagMs: 1000, onReplicaLag: 'warn' })).rows).toBe(1000) // the rows it has
        await new Promise((resolve) => setImmediate(resolve))
      } finally {
        process.off('warning', onWarning)
      }
      expect(warnings.map((w) => (w as Error & { code?: string }).code)).toEqual(['STREAM_EXPORT_REPLICA_LAG'])
    } finally {
      await replica.query('select pg_wal_replay_resume()')
    }
    await caughtUp()
    expect((await exportFrom(replica, { maxReplicaLagMs: 1000 })).rows).toBe(1001)
  }, 60_000)

  it('on a primary there is no lag: the export runs', async (context) => {
    if (!pair) return context.skip(`no primary and replica here: ${why}`)
    expect((await exportFrom(primary, { maxReplicaLagMs: 1 })).rows).toBeGreaterThanOrEqual(1000)
  })
})
