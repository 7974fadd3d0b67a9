// Delivery as a customer meets it: the e-mail arrives over real SMTP (smtp-server, sent through a
// nodemailer transport) with a link that downloads the export under its name; the export log (a
// real Postgres table) records it; at its expiry (an injected clock) the expiry processor deletes
// every object of it, once, however many workers run, and the link stops working. A notification
// that fails never fails the committed export: it is recorded and sent again.
import { createServer } from 'node:http'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2'
import { Queue, QueueEvents, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import { simpleParser, type ParsedMail } from 'mailparser'
import nodemailer from 'nodemailer'
import pg from 'pg'
import { SMTPServer } from 'smtp-server'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createExpiryProcessor,
  csv,
  exportLogMigration,
  fileNameFromTemplate,
  fromIterable,
  keyFromTemplate,
  notifyEmail,
  postgresExportLog,
  type ExportError,
  type ExportLog,
} from '../src/index.js'
import { createExportProcessor, type ExportJobResult, type ExportNotification } from '../src/bullmq.js'
import { databaseUrl } from './fixtures/postgres.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { sdkChecksum } from './helpers.js'

const redisUp = process.env.REDIS_AVAILABLE === '1'
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const connections: Redis[] = []
const newConnection = () => {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: !redisUp })
  connections.push(connection)
  return connection
}

describe('names from templates', () => {
  const date = new Date('2026-12-05T08:09:10Z')
  it('a key: labels and jobId encoded so that none leaves its folder; {date:...} in UTC', () => {
    expect(keyFromTemplate('exports/{tenant}/{date:yyyy-MM}/{jobId}.csv.gz', { jobId: '42', date, values: { tenant: '../../etc' } })).toBe(
      'exports/%2E%2E%2F%2E%2E%2Fetc/2026-12/42.csv.gz',
    )
    expect(keyFromTemplate('{date}/{date:yyyyMMdd-HHmmss}.csv', { date })).toBe('2026-12-05/20261205-080910.csv')
    // A partitioned export's columns stay for its partitions.
    expect(keyFromTemplate('{tenant}/{customer}.csv', { date, values: { tenant: 'a b' } }, new Set(['customer']))).toBe('a%20b/{customer}.csv')
    expect(() => keyFromTemplate('exports/{tennant}.csv', { date, values: { tenant: 'x' } })).toThrow(/names `\{tennant\}`/)
    expect(() => keyFromTemplate('{date:yyyy;rm}', { date })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })

  it('a file name keeps non-ASCII and spaces, replaces what no file system holds', () => {
    expect(fileNameFromTemplate('Statements {tenant} {date:yyyy-MM}.csv.gz', { date, values: { tenant: 'Café Müller/Zürich' } })).toBe(
      'Statements Café Müller_Zürich 2026-12.csv.gz',
    )
    expect(fileNameFromTemplate('{name}.csv', { date, values: { name: 'a\u0000b:c"d' } })).toBe('a_b_c_d.csv')
    expect(() => fileNameFromTemplate('{name}', { date, values: { name: '..' } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })
})

/** A real SMTP server on loopback: what it received, and a switch that makes it refuse mail. */
async function startSmtp() {
  const received: ParsedMail[] = []
  const state = { refuse: 0, refused: 0, code: 451 }
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, _session, callback) {
      simpleParser(stream).then(
        (mail) => {
          if (state.refuse > 0) {
            state.refuse--
            state.refused++
            return callback(Object.assign(new Error('mailbox busy, try later'), { responseCode: state.code }))
          }
          received.push(mail)
          callback()
        },
        (error: Error) => callback(error),
      )
    },
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.server.address() as { port: number }).port
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true })
  return { received, state, transport, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

describe("notifyEmail through nodemailer's SES transport", () => {
  it('sends the e-mail as SES v2 SendEmail (the real AWS SDK against a loopback endpoint speaking its REST API)', async () => {
    const requests: Array<{ path: string; body: { Content?: { Raw?: { Data?: string } } } }> = []
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => (body += d.toString()))
      req.on('end', () => {
        requests.push({ path: req.url ?? '', body: JSON.parse(body) as (typeof requests)[number]['body'] })
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ MessageId: 'm-1' }))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const sesClient = new SESv2Client({
        endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        region: 'eu-west-1',
        credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret' },
      })
      const transport = nodemailer.createTransport({ SES: { sesClient, SendEmailCommand } })
      const notify = notifyEmail({ transport, from: 'exports@example.com', to: (n) => n.requestedBy })
      await notify({
        event: 'export.completed',
        jobId: '9',
        rows: 12,
        bytes: 3456,
        url: 'https://s3.example/x?sig=1',
        requestedBy: 'ana@example.com',
        filename: 'Zoë.csv',
      })
      expect(requests).toHaveLength(1)
      expect(requests[0]!.path).toBe('/v2/email/outbound-emails')
      const mail = await simpleParser(Buffer.from(requests[0]!.body.Content!.Raw!.Data!, 'base64'))
      expect(mail.subject).toBe('Your export is ready: Zoë.csv')
      expect((mail.to as { text: string }).text).toBe('ana@example.com')
      expect(linkIn(mail)).toBe('https://s3.example/x?sig=1')
      expect(mail.text).toContain('Size: 3.5 KB')
    } finally {
      server.close()
    }
  })
})

const linkIn = (mail: ParsedMail) => /Download: (\S+)/.exec(mail.text ?? '')![1]!

describe.skipIf(!redisUp)('delivery: e-mail, export log, expiry (real SMTP, Postgres, Redis, S3 test server)', () => {
  let s3: TestS3
  let pool: pg.Pool
  let smtp: Awaited<ReturnType<typeof startSmtp>>
  let log: ExportLog
  const table = `se_export_log_${process.pid}`
  beforeAll(async () => {
    s3 = await startS3()
    smtp = await startSmtp()
    pool = new pg.Pool({ connectionString: databaseUrl(), max: 6 })
    await pool.query(`drop table if exists ${table}`)
    await pool.query(exportLogMigration(table))
    log = postgresExportLog({ pool, table })
  }, 60_000)
  afterAll(async () => {
    await pool?.query(`drop table if exists ${table}`)
    await Promise.all([s3?.close(), smtp?.close(), pool?.end()])
    await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())))
  })

  const get = async (key: string) => {
    const object = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
    return Buffer.from(await object.Body!.transformToByteArray())
  }

  /** Runs jobs on a real queue with this processor's options; resolves with each job's result. */
  async function runJobs(options: Partial<Parameters<typeof createExportProcessor>[0]>, jobs: object[]) {
    const name = `se-delivery-${Date.now()}-${Math.random().toString(36).slice(2)}`
    const queue = new Queue(name, { connection: newConnection() })
    const events = new QueueEvents(name, { connection: newConnection() })
    const worker = new Worker(
      name,
      createExportProcessor({
        s3: s3.client,
        bucket: s3.bucket,
        log,
        resolve: (job) => {
          const { rows, customers, ...spec } = job.data as { rows: number; customers?: number } & Record<string, unknown>
          return {
            source: fromIterable(Array.from({ length: rows }, (_, i) => ({ id: i + 1, customer: `c${customers ? i % customers : 0}`, amount: `${i}.50` }))),
            format: csv(),
            gzip: true,
            ...spec,
          }
        },
        ...options,
      }),
      { connection: newConnection() },
    )
    try {
      await events.waitUntilReady()
      const results: ExportJobResult[] = []
      for (const data of jobs) results.push(await (await queue.add('export', data)).waitUntilFinished(events, 60_000))
      return results
    } finally {
      await worker.close()
      await events.close()
      await queue.obliterate({ force: true })
      await queue.close()
    }
  }

  it('the e-mail arrives over SMTP with a link that downloads the export under its name; the log records who, what and where', async () => {
    const notified: ExportNotification[] = []
    const email = notifyEmail({ transport: smtp.transport, from: 'Exports <exports@example.com>', to: (n) => (n.labels?.email as string) ?? undefined })
    const [result] = await runJobs({ notify: async (n) => (notified.push(n), email(n)), urlExpiresIn: 7200 }, [
      {
        rows: 5000,
        key: 'exports/{tenant}/{date:yyyy-MM}/{jobId}.csv.gz',
        filename: 'Statements {tenant} {date:yyyy-MM}.csv.gz',
        labels: { tenant: 'Café Müller', email: 'anna@example.com' },
        expiresIn: 3600,
        requestedBy: 'user-7',
        fingerprint: { sql: 'select * from statements where tenant = $1', params: ['Café Müller'] },
      },
    ])
    const month = new Date().toISOString().slice(0, 7)
    expect(result!.location.key).toMatch(new RegExp(`^exports/Caf%C3%A9%20M%C3%BCller/${month}/\\d+\\.csv\\.gz$`))
    expect(result!.filename).toBe(`Statements Café Müller ${month}.csv.gz`)
    // The link lives 1 hour, not the 2 the processor allows: never longer than the export.
    expect(Date.parse(result!.urlExpiresAt) - Date.parse(result!.expiresAt!)).toBeLessThanOrEqual(1000)

    expect(smtp.received).toHaveLength(1)
    const [mail] = smtp.received
    expect(mail!.to).toMatchObject({ text: 'anna@example.com' })
    expect(mail!.subject).toBe(`Your export is ready: Statements Café Müller ${month}.csv.gz`)
    expect(mail!.text).toContain('Rows: 5,000')
    expect(mail!.text).toContain(`Checksum (CRC64NVME): ${result!.checksum!.value}`)
    expect(mail!.html).toContain('Download Statements Café Müller')
    // The link in the e-mail: the export's bytes, its checksum, saved under its name.
    const response = await fetch(linkIn(mail!))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-disposition')).toBe(
      `attachment; filename="Statements Caf_ M_ller ${month}.csv.gz"; filename*=UTF-8''Statements%20Caf%C3%A9%20M%C3%BCller%20${month}.csv.gz`,
    )
    const bytes = Buffer.from(await response.arrayBuffer())
    expect(bytes.equals(await get(result!.location.key))).toBe(true)
    expect(await sdkChecksum('CRC64NVME', bytes)).toBe(result!.checksum!.value)
    expect(gunzipSync(bytes).toString().split('\n')).toHaveLength(5002)

    const [entry] = await log.list(notified[0]!.jobId)
    expect(entry).toMatchObject({
      rows: 5000,
      bytes: bytes.length,
      format: 'csv.gz',
      bucket: s3.bucket,
      keys: [result!.location.key],
      requestedBy: 'user-7',
      filename: result!.filename,
      checksum: result!.checksum,
      labels: { tenant: 'Café Müller', email: 'anna@example.com' },
      notifyError: null,
      deletedAt: null,
    })
    expect(entry!.fingerprint).toMatch(/^[0-9a-f]{64}$/)
    expect(entry!.notifiedAt).toBeInstanceOf(Date)
    expect(entry!.expiresAt!.getTime() - entry!.createdAt.getTime()).toBe(3_600_000)
  }, 60_000)

  it('a notification that fails every attempt leaves the export committed; the log records it and the expiry processor sends it again', async () => {
    smtp.received.length = 0
    smtp.state.refuse = 3 // 451 three times: every attempt of the job's notifier
    const email = notifyEmail({ transport: smtp.transport, from: 'exports@example.com', to: () => 'ops@example.com', attempts: 3, backoffMs: 20 })
    const [result] = await runJobs({ notify: email }, [{ rows: 100, expiresIn: 600 }])
    expect(smtp.state.refused).toBeGreaterThanOrEqual(3)
    expect(smtp.received).toHaveLength(0)
    expect(result!.notifyErrors).toEqual([expect.stringMatching(/^E-mail notification failed: .*451/)])
    expect((await get(result!.location.key)).length).toBe(result!.bytes) // committed
    const jobId = result!.location.key.match(/(\d+)\.csv\.gz$/)![1]!
    const [failed] = await log.list(jobId)
    expect(failed).toMatchObject({ notifiedAt: null, notifyError: expect.stringMatching(/451/) })

    // The next run of the expiry processor sends it, with a fresh link.
    const expiry = createExpiryProcessor({ s3: s3.client, log, notify: email })
    const run = await expiry()
    expect(run.notified).toContain(jobId)
    expect(smtp.received).toHaveLength(1)
    expect((await fetch(linkIn(smtp.received[0]!))).status).toBe(200)
    expect(await log.get(jobId)).toMatchObject({ notifyError: null, notifiedAt: expect.any(Date) })
    expect((await expiry()).notified).not.toContain(jobId) // once
  }, 60_000)

  it('at its expiry a partitioned export is deleted (parts, manifest), once with two workers at once; its links answer 404; the log says deleted', async () => {
    let clock = Date.now()
    const now = () => new Date(clock)
    const notified: ExportNotification[] = []
    const [result] = await runJobs({ now, notify: (n) => void notified.push(n) }, [
      { rows: 3000, customers: 3, partitionBy: 'customer', key: 'expiring/{customer}/{date:yyyy}.csv.gz', filename: '{customer}.csv.gz', expiresIn: 60 },
    ])
    const partitions = result!.partitions!
    expect(partitions.map((p) => p.values.customer)).toEqual(['c0', 'c1', 'c2'])
    expect(partitions.map((p) => p.filename)).toEqual(['c0.csv.gz', 'c1.csv.gz', 'c2.csv.gz'])
    // One notification per customer, then the job's own.
    expect(notified.map((n) => n.partition?.customer ?? 'job')).toEqual(['c0', 'c1', 'c2', 'job'])
    const keys = [result!.location.key, ...partitions.flatMap((p) => p.locations.map((l) => l.key))]
    for (const key of keys) await get(key)
    const links = [result!.url, ...partitions.flatMap((p) => p.urls)]
    for (const link of links) expect((await fetch(link)).status).toBe(200)

    // Not yet expired: nothing deleted.
    const before = await createExpiryProcessor({ s3: s3.client, log, now })()
    expect(before.deleted.filter((id) => id.startsWith(notified[3]!.jobId))).toEqual([])

    clock += 61_000
    // Two workers (their own pools) at once.
    const pools = [new pg.Pool({ connectionString: databaseUrl(), max: 1 }), new pg.Pool({ connectionString: databaseUrl(), max: 1 })]
    try {
      const runs = await Promise.all(pools.map((p) => createExpiryProcessor({ s3: s3.client, log: postgresExportLog({ pool: p, table }), now, limit: 2 })()))
      const again = await createExpiryProcessor({ s3: s3.client, log, now })()
      const deleted = [...runs.flatMap((r) => r.deleted), ...again.deleted].filter((id) => id.startsWith(notified[3]!.jobId))
      expect(deleted.sort()).toEqual([notified[3]!.jobId, ...['c0', 'c1', 'c2'].map((c) => `${notified[3]!.jobId}/${c}`)].sort())
    } finally {
      await Promise.all(pools.map((p) => p.end()))
    }
    for (const key of keys) {
      expect(s3.requests.get(`DeleteObject ${key}`)).toBe(1)
      expect(await get(key).catch((e: Error) => e.name)).toBe('NoSuchKey')
    }
    for (const link of links) expect([403, 404]).toContain((await fetch(link)).status)
    const entries = await log.list(notified[3]!.jobId)
    expect(entries).toHaveLength(4)
    for (const entry of entries) expect(entry.deletedAt?.getTime()).toBe(clock)
  }, 60_000)

  it('bad delivery settings are refused before any output: an unknown spec key, an unknown placeholder, a zero expiry', async () => {
    for (const [data, message] of [
      [{ rows: 1, fileName: 'x.csv' }, /Unknown option `fileName` in `spec` \(did you mean `filename`\?\)/],
      [{ rows: 1, key: 'x/{tenant}.csv' }, /names `\{tenant\}`/],
      [{ rows: 1, expiresIn: 0 }, /expiresIn/],
    ] as const) {
      const name = `se-delivery-bad-${Date.now()}`
      const queue = new Queue(name, { connection: newConnection() })
      const events = new QueueEvents(name, { connection: newConnection() })
      const worker = new Worker(
        name,
        createExportProcessor({
          s3: s3.client,
          bucket: s3.bucket,
          resolve: (job) => {
            const { rows, ...spec } = job.data as { rows: number }
            return { source: fromIterable(Array.from({ length: rows }, (_, a) => ({ a }))), format: csv(), ...spec }
          },
        }),
        { connection: newConnection() },
      )
      try {
        await events.waitUntilReady()
        const error = await (await queue.add('export', data)).waitUntilFinished(events, 30_000).catch((e: ExportError) => e)
        expect(String(error)).toMatch(message)
      } finally {
        await worker.close()
        await events.close()
        await queue.obliterate({ force: true })
        await queue.close()
      }
    }
  }, 60_000)
})
