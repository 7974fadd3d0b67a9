// The e-mail notifier: "your export is ready" with the link, its expiry, rows, size and checksum,
// as plain text and HTML, sent through a nodemailer transport the caller made (SMTP, SES through
// nodemailer's SES transport, ...): this module imports nothing of nodemailer.
import { invalidOption } from '../core/errors.js'
import { checkFunction, checkObject, checkPositiveInteger, checkString, checkTimerMs, optionNames } from '../core/options.js'
import { withRetries } from './retry.js'
import type { ExportNotification } from './webhook.js'

/** A message as nodemailer's `sendMail` takes it (the fields this notifier sets). */
export interface MailMessage {
  from: string
  to: string | string[]
  subject: string
  text: string
  html: string
}

/** The part of a nodemailer transporter (`nodemailer.createTransport(...)`) the notifier uses. */
export interface MailTransport {
  sendMail(message: MailMessage): Promise<unknown>
}

/** What an e-mail says; the default (`exportEmail`) says the link, its expiry, rows, size and checksum. */
export interface EmailContent {
  subject: string
  text: string
  html: string
}

export interface EmailNotifierOptions {
  /** `nodemailer.createTransport({ host, port })`, or its SES transport (docs/delivery.md). */
  transport: MailTransport
  /** The sender, e.g. `'Exports <exports@example.com>'`. */
  from: string
  /**
   * The recipients of a notification, e.g. the customer of a partition:
   * `(n) => n.partition && emails.get(n.partition.customer)`. Nothing (undefined, `[]`): no e-mail.
   */
  to(notification: ExportNotification): string | string[] | undefined | Promise<string | string[] | undefined>
  /** Writes the e-mail instead of the default (`exportEmail`). */
  content?(notification: ExportNotification): EmailContent
  /** The events that send an e-mail. Default `['export.completed', 'partition.completed']` (failures: add `'export.failed'`). */
  events?: Array<ExportNotification['event']>
  /** Attempts in all (the first plus retries). Default 4. */
  attempts?: number
  /** First retry delay; doubles each time. Default 1000 ms. */
  backoffMs?: number
}

const EVENTS: ReadonlyArray<ExportNotification['event']> = ['export.completed', 'partition.completed', 'export.failed']

const EMAIL_OPTION_NAMES = optionNames<EmailNotifierOptions>({
  transport: true,
  from: true,
  to: true,
  content: true,
  events: true,
  attempts: true,
  backoffMs: true,
})

/**
 * A notifier that e-mails each notification's recipients (`to`), retried with exponential backoff;
 * a refusal for good (a 5xx SMTP answer) is not retried. A message the server took for some of the
 * recipients is sent: the others were refused for good, and sending again would reach the first twice. Rejects with
 * ERR_NOTIFY when every attempt failed. Give it to `createExportProcessor({ notify })`: a failed
 * notification never fails a committed export (docs/delivery.md).
 */
export function notifyEmail(options: EmailNotifierOptions): (notification: ExportNotification) => Promise<void> {
  checkObject('options', options, EMAIL_OPTION_NAMES)
  const { transport, from, to, content = exportEmail, events = ['export.completed', 'partition.completed'], attempts = 4, backoffMs = 1000 } = options
  if (typeof transport?.sendMail !== 'function') invalidOption('transport', 'a nodemailer transporter (with sendMail)', transport)
  checkString('from', from)
  checkFunction('to', to)
  checkFunction('content', content)
  if (!Array.isArray(events) || events.some((event) => !EVENTS.includes(event)))
    invalidOption('events', `an array of ${EVENTS.map((event) => `'${event}'`).join(', ')}`, events)
  checkPositiveInteger('attempts', attempts)
  checkTimerMs('backoffMs', backoffMs)

  return async (notification) => {
    if (!events.includes(notification.event)) return
    const recipients = await to(notification)
    if (recipients === undefined || recipients.length === 0) return
    const message = { from, to: recipients, ...content(notification) }
    await withRetries(
      'E-mail notification',
      { attempts, backoffMs },
      async () => {
        // A server that takes the message for some recipients and refuses others: those got it,
        // and sending again would write to them twice; the others are refused for good.
        const info = (await transport.sendMail(message)) as { accepted?: unknown[]; rejected?: unknown[] } | undefined
        if (info?.rejected?.length && !info.accepted?.length)
          throw Object.assign(new Error(`the server refused ${info.rejected.map(String).join(', ')}`), { responseCode: 550 })
      },
      (error) => {
        const code = (error as { responseCode?: number }).responseCode
        return code !== undefined && code >= 500 && code < 600
      },
    )
  }
}

/** The default e-mail: subject, plain text and HTML saying the link, its expiry, rows, size and checksum. */
export function exportEmail(n: ExportNotification): EmailContent {
  const what = n.filename ?? `export ${n.jobId}`
  if (n.event === 'export.failed') {
    const text = `Your export ${n.jobId} failed: ${n.error?.message ?? 'unknown error'} (${n.error?.code ?? 'ERR_UNKNOWN'}).\n`
    return { subject: `Your export failed`, text, html: `<p>${escapeHtml(text.trim())}</p>` }
  }
  const facts: Array<[string, string]> = [['File', what]]
  if (n.rows !== undefined) facts.push(['Rows', n.rows.toLocaleString('en')])
  if (n.bytes !== undefined) facts.push(['Size', size(n.bytes)])
  if (n.urlExpiresAt) facts.push(['Link valid until', when(n.urlExpiresAt)])
  if (n.expiresAt) facts.push(['File deleted on', when(n.expiresAt)])
  if (n.checksum) facts.push([`Checksum (${n.checksum.algorithm})`, n.checksum.value])
  const text = [`Your export is ready.`, '', `Download: ${n.url ?? '(no link)'}`, '', ...facts.map(([k, v]) => `${k}: ${v}`), ''].join('\n')
  const rows = facts.map(([k, v]) => `<tr><th align="left">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')
  const link = n.url ? `<p><a href="${escapeHtml(n.url)}">Download ${escapeHtml(what)}</a></p>` : ''
  const html = `<!doctype html><html><body><p>Your export is ready.</p>${link}<table>${rows}</table></body></html>`
  return { subject: `Your export is ready: ${what}`, text, html }
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const when = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC')
function size(bytes: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) [value, unit] = [value / 1000, unit + 1]
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`
}
