// The values of the command line's options (durations, sizes) and the error of a bad one.

/** A bad command line: exit code 2, the message and a pointer to --help. */
export class UsageError extends Error {}

/** `90s`, `30m`, `24h`, `7d`, or plain seconds -> seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text)
  if (!m) throw new UsageError(`--presign: expected a duration such as 3600s, 30m, 24h or 7d, got ${JSON.stringify(text)}`)
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd']
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 }

/** `100MB`, `1.5GB`, `512MiB`, or plain bytes -> bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024). */
export function parseSize(text: string, flag = '--split-bytes'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = SIZE_UNITS[m?.[2]?.toLowerCase() ?? '-']
  const bytes = m && unit ? Math.round(Number(m[1]) * unit) : 0
  if (!(bytes >= 1 && Number.isSafeInteger(bytes))) throw new UsageError(`${flag}: expected a size such as 100MB, 1GiB or 5000000, got ${JSON.stringify(text)}`)
  return bytes
}
