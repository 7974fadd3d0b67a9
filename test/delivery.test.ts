// Delivery as a customer meets it: names from templates, the e-mail over real SMTP (smtp-server,
// sent through a nodemailer transport) or SES (the real SDK), with a link that downloads the export
// under its name; the export log (a real Postgres table) records it. A notification that fails
// never fails the committed export: it is recorded and sent again. Expiry: delivery-expiry.test.ts.
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2'
import { simpleParser } from 'mailparser'
import nodemailer from 'nodemailer'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  createExpiryProcessor,
  exportLogMigration,
  fileNameFromTemplate,
  keyFromTemplate,
  notifyEmail,
  type ExportError,
  type ExportLog,
} from '../src/index.js'
import type { ExportJobResult, ExportNotification } from '../src/bullmq.js'
import { exportLogTable, linkIn, redisUp, runJobs, startSmtp } from './fixtures/delivery.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { sdkChecksum } from './helpers.js'

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

  it('a file name keeps non-ASCII and spaces, replaces what no file system holds or would mislead, and is never refused for a value', () => {
    const name = (template: string, values: Record<string, unknown>) => fileNameFromTemplate(template, { date, values })
    expect(name('Statements {tenant} {date:yyyy-MM}.csv.gz', { tenant: 'Café Müller/Zürich' })).toBe('Statements Café Müller_Zürich 2026-12.csv.gz')
    expect(name('{name}.csv', { name: 'a\u0000b:c"d\u0085e' })).toBe('a_b_c_d_e.csv') // C0, C1 (NEL) controls
    // A right-to-left override would show `Invoice xfdp.exe` as `Invoice xexe.pdf`; zero-width characters hide.
    expect(name('Invoice {n}.pdf', { n: 'x\u202Efdp.exe\u200B' })).toBe('Invoice x_fdp.exe_.pdf')
    expect(name('{n}', { n: '..' })).toBe('export')
    expect(name('{n}.csv', { n: null })).toBe('csv') // NULL is empty; the leading dot goes
    expect(name('{n}.csv', { n: '.NET Ltd' })).toBe('NET Ltd.csv')
    expect(name('{n}. ', { n: 'trail' })).toBe('trail')
    expect(name('{n}.csv', { n: 'con' })).toBe('_con.csv') // a Windows device name
    expect(name('{a}', {})).toBe('export') // a placeholder without a value is empty (checked before the export)
    const long = name('{a} {b} {c}.csv.gz', { a: '東'.repeat(100), b: '京'.repeat(100), c: 'x' })
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(200)
    expect(long.endsWith('.csv.gz')).toBe(true)
    expect(() => name('{date:yy}.csv', {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })
})

describe('exportLogMigration', () => {
  it('is the SQL docs/delivery.md shows (its comments aside)', async () => {
    const docs = await readFile(new URL('../docs/delivery.md', import.meta.url), 'utf8')
    const shown = /```sql\n([\s\S]*?)```/.exec(docs)![1]!
    const plain = (sql: string) => sql.replace(/--.*$/gm, '').replace(/\s+/g, ' ').trim()
    expect(plain(shown)).toBe(plain(exportLogMigration()))
  })
})

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

describe.skipIf(!redisUp)('delivery of a job: e-mail, export log (real SMTP, Postgres, Redis, S3 test server)', () => {
  let s3: TestS3
  let smtp: Awaited<ReturnType<typeof startSmtp>>
  let log: ExportLog
  const logTable = exportLogTable('se_export_log')
  beforeAll(async () => {
    s3 = await startS3()
    smtp = await startSmtp()
    log = logTable.current().log
  }, 60_000)
  afterAll(async () => {
    await Promise.all([s3?.close(), smtp?.close()])
  })
  beforeEach(() => {
    smtp.received.length = 0
    Object.assign(smtp.state, { refuse: 0, refused: 0, refuseRecipient: undefined })
  })
  const get = async (key: string) =>
    Buffer.from(await (await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToByteArray())
  const ok = (result: ExportJobResult | Error | undefined): ExportJobResult => {
    if (!result || result instanceof Error) throw result ?? new Error('no result')
    return result
  }

  it('the e-mail arrives over SMTP with a link that downloads the export under its name; the log records who, what and where', async () => {
    const notified: ExportNotification[] = []
    const email = notifyEmail({ transport: smtp.transport, from: 'Exports <exports@example.com>', to: (n) => (n.labels?.email as string) ?? undefined })
    const { queue, results } = await runJobs({ s3: s3.client, bucket: s3.bucket, log, notify: async (n) => (notified.push(n), email(n)), urlExpiresIn: 7200 }, [
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
    const result = ok(results[0])
    const month = new Date().toISOString().slice(0, 7)
    expect(result.location.key).toMatch(new RegExp(`^exports/Caf%C3%A9%20M%C3%BCller/${month}/\\d+\\.csv\\.gz$`))
    expect(result.filename).toBe(`Statements Café Müller ${month}.csv.gz`)
    // The link lives 1 hour, not the 2 the processor allows: never longer than the export.
    expect(Date.parse(result.urlExpiresAt) - Date.parse(result.expiresAt!)).toBeLessThanOrEqual(1000)

    expect(smtp.received).toHaveLength(1)
    const [mail] = smtp.received
    expect(mail!.to).toMatchObject({ text: 'anna@example.com' })
    expect(mail!.subject).toBe(`Your export is ready: Statements Café Müller ${month}.csv.gz`)
    expect(mail!.text).toContain('Rows: 5,000')
    expect(mail!.text).toContain(`Checksum (CRC64NVME): ${result.checksum!.value}`)
    expect(mail!.html).toContain('Download Statements Café Müller')
    // The link in the e-mail: the export's bytes, its checksum, saved under its name.
    const response = await fetch(linkIn(mail!))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-disposition')).toBe(
      `attachment; filename="Statements Caf_ M_ller ${month}.csv.gz"; filename*=UTF-8''Statements%20Caf%C3%A9%20M%C3%BCller%20${month}.csv.gz`,
    )
    const bytes = Buffer.from(await response.arrayBuffer())
    expect(bytes.equals(await get(result.location.key))).toBe(true)
    expect(await sdkChecksum('CRC64NVME', bytes)).toBe(result.checksum!.value)
    expect(gunzipSync(bytes).toString().split('\n')).toHaveLength(5002)

    const jobId = notified[0]!.jobId
    expect(notified[0]!.entryId).toBe(`${queue}/${jobId}`)
    const [entry, ...others] = await log.list(`${queue}/${jobId}`)
    expect(others).toEqual([])
    expect(entry).toMatchObject({
      jobId,
      rows: 5000,
      bytes: bytes.length,
      format: 'csv.gz',
      bucket: s3.bucket,
      keys: [result.location.key],
      requestedBy: 'user-7',
      filename: result.filename,
      checksum: result.checksum,
      labels: { tenant: 'Café Müller', email: 'anna@example.com' },
      notify: true,
      notifyError: null,
      deletedAt: null,
      replacedBy: null,
    })
    expect(entry!.fingerprint).toMatch(/^[0-9a-f]{64}$/)
    expect(entry!.notifiedAt).toBeInstanceOf(Date)
    expect(entry!.expiresAt!.getTime() - entry!.createdAt.getTime()).toBe(3_600_000)
  }, 60_000)

  it('a partitioned job e-mails each customer (partition.completed) with their own link and file name, then notifies the job (export.completed)', async () => {
    const notified: ExportNotification[] = []
    const email = notifyEmail({
      transport: smtp.transport,
      from: 'x@example.com',
      to: (n) => (n.partition ? `${String(n.partition.customer)}@example.com` : undefined),
    })
    // (Each notification returns in the next second: a link signed again for the result would differ.)
    const notify = async (n: ExportNotification) => {
      notified.push(n)
      await email(n)
      await new Promise((resolve) => setTimeout(resolve, 1010 - (Date.now() % 1000)))
    }
    const { results } = await runJobs({ s3: s3.client, bucket: s3.bucket, log, notify }, [
      { rows: 300, customers: 3, partitionBy: 'customer', filename: 'Statements {customer}.csv.gz' },
    ])
    const result = ok(results[0])
    expect(notified.map((n) => [n.event, n.partition?.customer])).toEqual([
      ['partition.completed', 'c0'],
      ['partition.completed', 'c1'],
      ['partition.completed', 'c2'],
      ['export.completed', undefined],
    ])
    expect(smtp.received.map((m) => (m.to as { text: string }).text).sort()).toEqual(['c0@example.com', 'c1@example.com', 'c2@example.com'])
    for (const mail of smtp.received) {
      const customer = (mail.to as { text: string }).text.split('@')[0]!
      const response = await fetch(linkIn(mail))
      expect(response.headers.get('content-disposition')).toBe(`attachment; filename="Statements ${customer}.csv.gz"`)
      const rows = gunzipSync(Buffer.from(await response.arrayBuffer()))
        .toString()
        .trim()
        .split('\n')
        .slice(1)
      expect(rows).toHaveLength(100)
      expect(rows.every((row) => row.split(',')[1] === customer)).toBe(true)
    }
    expect(result.partitions!.map((p) => p.filename)).toEqual(['Statements c0.csv.gz', 'Statements c1.csv.gz', 'Statements c2.csv.gz'])
    // The result carries the very links the customers were sent.
    expect(result.partitions!.map((p) => p.urls[0])).toEqual(notified.slice(0, 3).map((n) => n.url))
  }, 60_000)

  it('a notification that fails every attempt leaves the export committed; the log records it and the expiry processor sends it again', async () => {
    smtp.state.refuse = 3 // 451 three times: every attempt of the job's notifier
    const email = notifyEmail({ transport: smtp.transport, from: 'exports@example.com', to: () => 'ops@example.com', attempts: 3, backoffMs: 20 })
    const { queue, results } = await runJobs({ s3: s3.client, bucket: s3.bucket, log, notify: email }, [{ rows: 100, expiresIn: 600 }])
    const result = ok(results[0])
    expect(smtp.state.refused).toBe(3)
    expect(smtp.received).toHaveLength(0)
    expect(result.notifyErrors).toEqual([expect.stringMatching(/^E-mail notification failed: .*451/)])
    expect((await get(result.location.key)).length).toBe(result.bytes) // committed
    const exportId = `${queue}/${/(\d+)\.csv\.gz$/.exec(result.location.key)![1]}`
    expect(await log.get(exportId)).toMatchObject({ notifiedAt: null, notifyError: expect.stringMatching(/451/) })

    // The next run of the expiry processor sends it, with a fresh link.
    const expiry = createExpiryProcessor({ s3: s3.client, log, notify: email })
    expect((await expiry()).notified).toContain(exportId)
    expect(smtp.received).toHaveLength(1)
    expect((await fetch(linkIn(smtp.received[0]!))).status).toBe(200)
    expect(await log.get(exportId)).toMatchObject({ notifyError: null, notifiedAt: expect.any(Date) })
    expect((await expiry()).notified).not.toContain(exportId) // once
  }, 60_000)

  it('recipients the server refuses: all of them is a failure (ERR_NOTIFY, not retried); some of them is a message sent to the others, once', async () => {
    smtp.state.refuseRecipient = 'gone@example.com'
    const email = (to: string[]) => notifyEmail({ transport: smtp.transport, from: 'x@example.com', to: () => to, backoffMs: 5 })
    const error = await email(['gone@example.com'])({ event: 'export.completed', jobId: '1', url: 'https://x' }).catch((e: ExportError) => e)
    expect(error).toMatchObject({ code: 'ERR_NOTIFY', message: expect.stringMatching(/all recipients were rejected: 550/) })
    expect(smtp.received).toHaveLength(0)
    await email(['ana@example.com', 'gone@example.com'])({ event: 'export.completed', jobId: '1', url: 'https://x' })
    expect(smtp.received).toHaveLength(1) // ana got it once
  })

  it('bad delivery settings are refused before any output: an unknown spec key, an unknown placeholder, a bad label, an expiry nothing would act on', async () => {
    const cases = [
      [{ rows: 1, fileName: 'x.csv' }, /Unknown option `fileName` in `spec` \(did you mean `filename`\?\)/],
      [{ rows: 1, key: 'x/{tenant}.csv' }, /names `\{tenant\}`/],
      [{ rows: 1, filename: 'Orders {tennant}.csv', labels: { tenant: 'a' } }, /names `\{tennant\}`/],
      [{ rows: 1, filename: '{date:yy}.csv' }, /date format/],
      [{ rows: 1, labels: { tenant: { id: 1 } } }, /labels\.tenant/],
      [{ rows: 1, expiresIn: 0 }, /expiresIn/],
    ] as const
    const { results } = await runJobs(
      { s3: s3.client, bucket: s3.bucket, log },
      cases.map(([data]) => ({ ...data })),
    )
    cases.forEach(([, message], i) => expect((results[i] as Error).message).toMatch(message))
    // Without a log or expiryTag, nothing would delete it: refused.
    const { results: unkept } = await runJobs({ s3: s3.client, bucket: s3.bucket }, [{ rows: 1, expiresIn: 60 }])
    expect((unkept[0] as Error).message).toMatch(/expiresIn.*nothing else would/)
  }, 60_000)
})
