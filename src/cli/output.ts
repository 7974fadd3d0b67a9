// What the CLI prints besides the data: progress lines, sizes, and messages with any password
// redacted.
import type { ExportEstimate, Progress } from '../index.js'

/**
 * `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, for messages: any scheme, a
 * password holding `/` or `@` (everything up to the last `@` of the URL goes), and password-like
 * query parameters (`?password=...`, `sslpassword`, `secret`, `token`...).
 */
export function redact(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:)\S*@/gi, '$1***@')
    .replace(/([?&;](?:ssl)?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key)=)[^&\s#]*/gi, '$1***')
}

const formatDuration = (ms: number) => {
  const s = Math.round(ms / 1000)
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`
}
export const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`

/** One progress line: a bar when the total is known, else counts and rate. */
export function progressLine(p: Progress, width = 24): string {
  const rate = `${Math.round(p.rowsPerSecond).toLocaleString('en')} rows/s`
  const rows = `${p.rows.toLocaleString('en')} rows`
  if (p.percent === undefined) return `${rows}  ${rate}  ${mb(p.bytes)}`
  const filled = Math.round((p.percent / 100) * width)
  const eta = p.etaMs === undefined ? '' : `  ETA ${formatDuration(p.etaMs)}`
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.percent.toFixed(1).padStart(5)}%  ${rows}  ${rate}${eta}  ${mb(p.bytes)}`
}

/** What --dry-run prints: the estimate, each figure saying where it comes from. */
export function estimateLines(estimate: ExportEstimate, counted: 'exact' | 'estimate' | 'none', what: string): string {
  const { rows, sample } = estimate
  const approx = counted === 'exact' ? '' : '~'
  const lines = ['dry run: nothing was written']
  lines.push(
    rows === undefined
      ? 'rows:  unknown (the source cannot count them; --count exact or estimate)'
      : `rows:  ${approx}${rows.toLocaleString('en')} (${counted === 'exact' ? 'counted' : 'estimated'})`,
  )
  const perRow = sample.rows === 0 ? 0 : sample.bytes / sample.rows
  const sampled = `${perRow.toFixed(1)} bytes a row over the first ${sample.rows.toLocaleString('en')} rows`
  if (estimate.bytes !== undefined) {
    const before = estimate.uncompressedBytes !== estimate.bytes ? `, ${mb(estimate.uncompressedBytes!)} before compression` : ''
    lines.push(`size:  ~${mb(estimate.bytes)} of ${what} (${sampled}${before})`)
  } else lines.push(`size:  ${sampled}`)
  if (estimate.parts !== undefined) lines.push(`parts: ~${estimate.parts.toLocaleString('en')}`)
  if (estimate.durationMs !== undefined) lines.push(`time:  ~${formatDuration(estimate.durationMs)} at the sample's rate`)
  return `${lines.join('\n')}\n`
}
