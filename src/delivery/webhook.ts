import { createHmac, timingSafeEqual } from 'node:crypto'
import type { ObjectChecksum } from '../core/checksum.js'
import { invalidOption } from '../core/errors.js'
import { checkObject, checkPositiveInteger, checkString, checkTimerMs, optionNames } from '../core/options.js'
import { withRetries } from './retry.js'

/**
 * What an export job reports to its notifiers (webhook, e-mail): `export.completed` or
 * `export.failed` once per job; a partitioned job first sends `partition.completed` for each
 * partition (with `partition` and its own link).
 */
export interface ExportNotification {
  event: 'export.completed' | 'partition.completed' | 'export.failed'
  jobId: string
  rows?: number
  bytes?: number
  location?: unknown
  /** The presigned download URL, when there is one (a partition's: of its first object). */
  url?: string
  /** When `url` stops working (ISO 8601): never after the export is deleted. */
  urlExpiresAt?: string
  /** When the export is deleted (ISO 8601), with `expiresIn`. */
  expiresAt?: string
  /** The file name the download saves under. */
  filename?: string
  /** The object's full checksum, when it has one. */
  checksum?: ObjectChecksum
  /** The export log's id of what this notification is about (a download endpoint's key: docs/delivery.md). */
  entryId?: string
  /** A partition's values (`partition.completed`). */
  partition?: Record<string, unknown>
  /** The export's labels (e.g. `{ tenant }`), as the job's spec gave them. */
  labels?: Record<string, unknown>
  /** Who asked for the export, as the job's spec said. */
  requestedBy?: string
  /** For `export.failed`: the ExportError code and message. */
  error?: { code: string; message: string }
}

export interface WebhookOptions {
  url: string
  /** Shared secret for the HMAC-SHA256 signature. */
  secret: string
  /** Attempts in all (the first plus retries). Default 4. */
  attempts?: number
  /** First retry delay; doubles each time. Default 1000 ms. */
  backoffMs?: number
  /** Per request. Default 10,000 ms. */
  timeoutMs?: number
}

export const SIGNATURE_HEADER = 'x-stream-export-signature'
export const TIMESTAMP_HEADER = 'x-stream-export-timestamp'

const sign = (secret: string, timestamp: string, body: string) => `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`

const WEBHOOK_OPTION_NAMES = optionNames<WebhookOptions>({ url: true, secret: true, attempts: true, backoffMs: true, timeoutMs: true })

/**
 * A notifier that POSTs JSON to `url`, signed with HMAC-SHA256 over `<timestamp>.<body>` (headers
 * `x-stream-export-signature: sha256=<hex>` and `x-stream-export-timestamp: <unix seconds>`),
 * retried with exponential backoff on network errors, 429 and 5xx. Rejects with ERR_NOTIFY when all
 * attempts fail or the receiver answers another 4xx.
 */
export function notifyWebhook(options: WebhookOptions): (notification: ExportNotification) => Promise<void> {
  checkObject('options', options, WEBHOOK_OPTION_NAMES)
  const { url, secret, attempts = 4, backoffMs = 1000, timeoutMs = 10_000 } = options
  checkString('url', url)
  if (!/^https?:\/\//.test(url)) invalidOption('url', 'an http(s) URL', url)
  checkString('secret', secret)
  checkPositiveInteger('attempts', attempts)
  checkTimerMs('backoffMs', backoffMs)
  checkTimerMs('timeoutMs', timeoutMs)

  return async (notification) => {
    const body = JSON.stringify(notification)
    await withRetries(
      'Webhook notification',
      { attempts, backoffMs },
      async () => {
        const timestamp = String(Math.floor(Date.now() / 1000))
        const response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: sign(secret, timestamp, body), [TIMESTAMP_HEADER]: timestamp },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        })
        await response.arrayBuffer().catch(() => {})
        if (!response.ok) throw Object.assign(new Error(`the webhook answered ${response.status}`), { status: response.status })
      },
      // The receiver refuses: retrying will not help.
      (error) => {
        const status = (error as { status?: number }).status
        return status !== undefined && status < 500 && status !== 429
      },
    )
  }
}

const VERIFY_WEBHOOK_OPTION_NAMES = optionNames<Parameters<typeof verifyWebhook>[0]>({
  secret: true,
  body: true,
  signature: true,
  timestamp: true,
  toleranceSeconds: true,
})

/**
 * For receivers: true when `signature` is the HMAC of `timestamp` and the raw `body` with
 * `secret`, and the timestamp is within `toleranceSeconds` of now (default 300: replays fail).
 * A missing or malformed signature, timestamp or body is `false`; an empty secret, a tolerance
 * that is not a positive number or an unknown option key (`toleranceSecond`) is a configuration
 * error (ERR_INVALID_OPTION).
 */
export function verifyWebhook(options: {
  secret: string
  body: string
  signature: string | undefined
  timestamp: string | undefined
  toleranceSeconds?: number
}): boolean {
  checkObject('options', options, VERIFY_WEBHOOK_OPTION_NAMES)
  const { secret, body, signature, timestamp, toleranceSeconds = 300 } = options
  checkString('secret', secret)
  if (typeof toleranceSeconds !== 'number' || !(toleranceSeconds > 0) || toleranceSeconds === Infinity) {
    invalidOption('toleranceSeconds', 'a positive number of seconds', toleranceSeconds)
  }
  if (typeof signature !== 'string' || typeof timestamp !== 'string' || typeof body !== 'string') return false
  if (!/^\d+$/.test(timestamp) || !(Math.abs(Date.now() / 1000 - Number(timestamp)) <= toleranceSeconds)) return false
  const expected = Buffer.from(sign(secret, timestamp, body))
  const given = Buffer.from(signature)
  return expected.length === given.length && timingSafeEqual(expected, given)
}
