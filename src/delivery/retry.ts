// The retry loop of the notifiers (webhook, e-mail): attempts with an exponential backoff, stopping
// early when the receiver refuses for good; the last failure is ERR_NOTIFY.
import { ExportError } from '../core/errors.js'

/** Attempts and backoff of a notifier, checked by its factory. */
export interface RetryPolicy {
  /** Attempts in all (the first plus retries). */
  attempts: number
  /** First retry delay; doubles each time. */
  backoffMs: number
}

/**
 * Calls `attempt` until it resolves, at most `attempts` times, waiting `backoffMs`, then twice that,
 * between them; a failure `final` picks (a 4xx, a refused recipient: retrying cannot mend it) stops
 * at once. The last failure rejects as ERR_NOTIFY naming `what`, with the failure as its cause.
 */
export async function withRetries(
  what: string,
  { attempts, backoffMs }: RetryPolicy,
  attempt: () => Promise<void>,
  final: (error: unknown) => boolean = () => false,
): Promise<void> {
  let last: unknown
  for (let n = 1; n <= attempts; n++) {
    try {
      return await attempt()
    } catch (error) {
      last = error
      if (final(error)) break
    }
    if (n < attempts) await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** (n - 1)))
  }
  throw new ExportError('ERR_NOTIFY', 'notify', `${what} failed: ${(last as Error)?.message ?? String(last)}`, { cause: last })
}
