// Expiry and the export log under the faults that matter: at its expiry (an injected clock) an
// export's objects are deleted once however many workers run, its links stop working and the log
// says so; a worker that dies holding entries gives them back when its lease ends; a later export
// that writes the same key is never deleted with the earlier one; a failure after the commit
// retries the delivery, never the export; two queues' job ids never share an entry.
import { GetObjectCommand } from '@aws-sdk/client-s3'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createExpiryProcessor, csv, fromIterable, postgresExportLog, type ExportLog } from '../src/index.js'
import type { ExportJobResult, ExportNotification } from '../src/bullmq.js'
import { exportLogTable, logEntry, redisUp, runJobs } from './fixtures/delivery.js'
import { databaseUrl } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'

describe.skipIf(!redisUp)('expiry and the export log (real Postgres, Redis, S3 test server)', () => {
  let s3: TestS3
  let pool: pg.Pool
  let log: ExportLog
  let table: string
  const logTable = exportLogTable('se_export_expiry')
  beforeAll(async () => {
    s3 = await startS3()
    ;({ pool, log, table } = logTable.current())
  }, 60_000)
  afterAll(() => s3?.close())
  const get = async (key: string) =>
    Buffer.from(await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToByteArray())
  const gone = (key: string) =>
    get(key).then(
      () => false,
      (error: Error) => error.name === 'NoSuchKey',
    )
  const ok = (result: ExportJobResult | Error | undefined): ExportJobResult => {
    if (!result || result instanceof Error) throw result ?? new Error('no result')
    return result
  }
  const otherLog = (max = 1) => {
    const other = new pg.Pool({ connectionString: databaseUrl(), max })
    return { log: postgresExportLog({ pool: other, table }), end: () => other.end() }
  }

  it('at its expiry a partitioned export is deleted (parts, manifest), once with two workers at once; its links answer 404; the log says deleted', async () => {
    let clock = Date.now()
    const now = () => new Date(clock)
    const notified: ExportNotification[] = []
    const { queue, results } = await runJobs({ s3: s3.client, bucket: s3.bucket, log, now, notify: (n) => void notified.push(n) }, [
      { rows: 3000, customers: 3, partitionBy: 'customer', key: 'expiring/{customer}/{date:yyyy}.csv.gz', filename: '{customer}.csv.gz', expiresIn: 60 },
    ])
    const result = ok(results[0])
    const exportId = `${queue}/${notified[0]!.jobId}`
    expect(result.partitions!.map((p) => p.filename)).toEqual(['c0.csv.gz', 'c1.csv.gz', 'c2.csv.gz'])
    const keys = [result.location.key, ...result.partitions!.flatMap((p) => p.locations.map((l) => l.key))]
    expect(keys).toHaveLength(4)
    const links = [result.url, ...result.partitions!.flatMap((p) => p.urls)]
    for (const link of links) expect((await fetch(link)).status).toBe(200)

    // Not yet expired: nothing deleted.
    expect((await createExpiryProcessor({ s3: s3.client, log, now })()).deleted).toEqual([])

    clock += 61_000
    // Two workers (their own pools) at once, two entries each at most, then one more run.
    const logs = [otherLog(), otherLog()]
    try {
      const runs = await Promise.all(logs.map((l) => createExpiryProcessor({ s3: s3.client, log: l.log, now, limit: 2 })()))
      const again = await createExpiryProcessor({ s3: s3.client, log, now })()
      const deleted = [...runs.flatMap((r) => r.deleted), ...again.deleted]
      expect(deleted.sort()).toEqual([exportId, `${exportId}/c0`, `${exportId}/c1`, `${exportId}/c2`])
    } finally {
      await Promise.all(logs.map((l) => l.end()))
    }
    for (const key of keys) {
      expect(s3.requests.get(`DeleteObject ${key}`)).toBe(1)
      expect(await gone(key)).toBe(true)
    }
    for (const link of links) expect([403, 404]).toContain((await fetch(link)).status)
    const entries = await log.list(exportId)
    expect(entries.map((e) => e.partition?.customer ?? 'export')).toEqual(['export', 'c0', 'c1', 'c2'])
    for (const entry of entries) expect(entry.deletedAt?.getTime()).toBe(clock)
  }, 60_000)

  it('a worker that dies holding entries gives them back when its lease ends; a deletion that fails is tried again later', async () => {
    let clock = Date.now()
    const now = () => new Date(clock)
    const { queue, results } = await runJobs({ s3: s3.client, bucket: s3.bucket, log, now }, [{ rows: 10, expiresIn: 60 }])
    const result = ok(results[0])
    const exportId = `${queue}/${/(\d+)\.csv\.gz$/.exec(result.location.key)![1]}`
    clock += 61_000
    // A worker dies while it deletes: its lease is all that is left of it.
    const died = await log
      .lease('expired', { now: now(), limit: 10, leaseMs: 600_000 }, () => Promise.reject(new Error('SIGKILL')))
      .catch((e: Error) => e.message)
    expect(died).toBe('SIGKILL')
    expect((await createExpiryProcessor({ s3: s3.client, log, now })()).deleted).not.toContain(exportId) // still leased
    clock += 600_001
    // S3 refuses the first delete: the entry waits retryMs, then goes.
    s3.inject({ op: 'DeleteObject', key: result.location.key, action: 503, times: 4 })
    const failed = await createExpiryProcessor({ s3: s3.client, log, now, retryMs: 60_000 })()
    expect(failed.failed.map((f) => f.id)).toContain(exportId)
    expect((await createExpiryProcessor({ s3: s3.client, log, now })()).deleted).not.toContain(exportId) // waits
    s3.clearFaults()
    clock += 60_001
    expect((await createExpiryProcessor({ s3: s3.client, log, now })()).deleted).toContain(exportId)
    expect(await gone(result.location.key)).toBe(true)
  }, 60_000)

  it('a later export that writes the same key replaces the earlier in the log: the earlier one expiring never deletes it', async () => {
    let clock = Date.now()
    const now = () => new Date(clock)
    const { queue, results } = await runJobs({ s3: s3.client, bucket: s3.bucket, log, now }, [
      { rows: 10, key: 'reports/daily.csv.gz', expiresIn: 60 },
      { rows: 20, key: 'reports/daily.csv.gz', expiresIn: 3600 },
      // Partitioned exports sharing a template without {jobId}: the second's commit removed the first's parts.
      { rows: 30, customers: 2, partitionBy: 'customer', key: 'monthly/{customer}.csv.gz', expiresIn: 60 },
      { rows: 40, customers: 2, partitionBy: 'customer', key: 'monthly/{customer}.csv.gz', expiresIn: 3600 },
    ])
    const [first, second, third, fourth] = results.map(ok)
    const idOf = async (key: string, rows: number) =>
      (await pool.query(`select id from ${table} where $1 = any(keys) and rows = $2`, [key, rows])).rows[0].id as string
    const firstId = await idOf(first!.location.key, 10)
    const secondId = await idOf(second!.location.key, 20)
    expect(firstId).not.toBe(secondId)
    expect(await log.get(firstId)).toMatchObject({ replacedBy: secondId, deletedAt: expect.any(Date) })
    const thirdId = await idOf(third!.location.key, 30)
    const fourthId = await idOf(fourth!.location.key, 40)
    const thirdEntries = await log.list(thirdId)
    expect(thirdEntries).toHaveLength(3)
    for (const entry of thirdEntries) expect(entry).toMatchObject({ replacedBy: fourthId, deletedAt: expect.any(Date) })
    expect(queue).toBeTruthy()

    clock += 61_000
    const run = await createExpiryProcessor({ s3: s3.client, log, now })()
    expect(run.deleted).not.toContain(firstId)
    expect((await get('reports/daily.csv.gz')).length).toBe(second!.bytes) // the later export, untouched
    expect(await gone(fourth!.location.key)).toBe(false) // its manifest
    for (const p of fourth!.partitions!) for (const l of p.locations) expect(await gone(l.key)).toBe(false)
  }, 60_000)

  it('the export committed later wins whichever records first; a retry of the earlier one never brings it back', async () => {
    const base = Date.now()
    const entry = (exportId: string, run: string, committedAt: number) =>
      logEntry({
        id: exportId,
        jobId: exportId,
        run,
        bucket: s3.bucket,
        keys: ['order/latest.csv'],
        createdAt: new Date(committedAt),
        expiresAt: new Date(committedAt + 60_000),
      })
    const a = entry('order/a', 'ra', base)
    const b = entry('order/b', 'rb', base + 1000)
    await log.record([a])
    await log.record([b]) // later: replaces a
    await log.record([a]) // a's retry (same commit): stays replaced, b stays live
    expect(await log.get('order/a')).toMatchObject({ replacedBy: 'order/b', deletedAt: expect.any(Date) })
    expect(await log.get('order/b')).toMatchObject({ replacedBy: null, deletedAt: null })
    // Recorded in the other order (b's record first, a committed before it): a is the replaced one.
    const c = entry('order/c', 'rc', base + 3000)
    const d = entry('order/d', 'rd', base + 2000)
    await log.record([c])
    await log.record([d])
    expect(await log.get('order/d')).toMatchObject({ replacedBy: 'order/c' })
    expect(await log.get('order/c')).toMatchObject({ replacedBy: null, deletedAt: null })
    expect(await log.get('order/b')).toMatchObject({ replacedBy: 'order/c' })
  })

  it('a failure after the commit (the log down) retries the delivery only: the export is not run again and no export.failed is sent', async () => {
    let reads = 0
    let failRecord = true
    const flaky: ExportLog = {
      ...log,
      record: (entries) => {
        if (failRecord) {
          failRecord = false
          return Promise.reject(new Error('connection terminated'))
        }
        return log.record(entries)
      },
    }
    const notified: ExportNotification[] = []
    const { queue, results } = await runJobs(
      {
        s3: s3.client,
        bucket: s3.bucket,
        log: flaky,
        notify: (n) => void notified.push(n),
        resolve: () => ({
          source: fromIterable(
            (function* () {
              reads++
              for (let i = 0; i < 1000; i++) yield { i }
            })(),
          ),
          format: csv(),
          key: 'committed/once.csv',
        }),
      },
      [{ opts: { attempts: 2, backoff: { type: 'fixed', delay: 100 } } }],
    )
    const result = ok(results[0])
    expect(reads).toBe(1) // the export ran once
    expect(result.rows).toBe(1000)
    expect((await get('committed/once.csv')).toString().trim().split('\n')).toHaveLength(1001)
    expect(notified.map((n) => n.event)).toEqual(['export.completed'])
    const jobId = notified[0]!.jobId
    expect(await log.get(`${queue}/${jobId}`)).toMatchObject({ rows: 1000, keys: ['committed/once.csv'], notifiedAt: expect.any(Date) })
  }, 60_000)

  it('two queues sharing a log, with the same job id, keep two entries; a notification no attempt sent is sent once the lease its job took ends, and once', async () => {
    const jobId = `same-${Date.now()}`
    const { queue: q1 } = await runJobs({ s3: s3.client, bucket: s3.bucket, log }, [{ rows: 1, key: 'q1/{jobId}.csv.gz', opts: { jobId } }])
    const { queue: q2 } = await runJobs({ s3: s3.client, bucket: s3.bucket, log }, [{ rows: 2, key: 'q2/{jobId}.csv.gz', opts: { jobId } }])
    expect(await log.get(`${q1}/${jobId}`)).toMatchObject({ rows: 1, keys: [`q1/${jobId}.csv.gz`], deletedAt: null })
    expect(await log.get(`${q2}/${jobId}`)).toMatchObject({ rows: 2, keys: [`q2/${jobId}.csv.gz`], deletedAt: null })

    // A worker killed between the record and its notification: the entry is its job's for an hour, then the expiry processor's.
    const at = new Date()
    const entry = logEntry({ id: 'q3/1', rows: 3, bytes: 10, bucket: s3.bucket, keys: ['q3/1.csv'], createdAt: at, notify: true })
    await log.record([entry], { notifyUntil: new Date(at.getTime() + 3_600_000) })
    const sent: ExportNotification[] = []
    const expiry = (offset: number) =>
      createExpiryProcessor({ s3: s3.client, log, notify: (n) => void sent.push(n), now: () => new Date(at.getTime() + offset) })()
    expect((await expiry(1000)).notified).not.toContain('q3/1') // its job may still be sending it
    expect((await expiry(3_600_001)).notified).toContain('q3/1')
    expect((await expiry(3_700_000)).notified).not.toContain('q3/1')
    expect(sent.filter((n) => n.entryId === 'q3/1')).toHaveLength(1)
    // The same commit recorded again (a retry of its job): notified stays, nothing is sent twice.
    await log.record([entry], { notifyUntil: new Date(at.getTime() + 3_600_000) })
    expect(await log.get('q3/1')).toMatchObject({ notifiedAt: expect.any(Date) })
  }, 60_000)
})
