// The command line's production-safety options: the Postgres session's guards and the export's
// rates (docs/operations.md). Pure: parsed and checked here, used by open.ts and main.ts.
import type { PostgresGuardOptions } from '../index.js'
import { isApplicationName, MAX_TIMEOUT_MS } from '../sources/postgres/connection.js'
import { parseSize, UsageError } from './values.js'

export const PRODUCTION_FLAGS = {
  'statement-timeout': { type: 'string' },
  'lock-timeout': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'application-name': { type: 'string' },
  'read-write': { type: 'boolean', default: false },
  'max-replica-lag': { type: 'string' },
  'max-rows-per-second': { type: 'string' },
  'max-bytes-per-second': { type: 'string' },
  'dry-run': { type: 'boolean', default: false },
} as const

export const PRODUCTION_USAGE = `Production (docs/operations.md)
  --statement-timeout <t>  Postgres: cancel a statement that runs longer (500ms, 30s, 5m; a cursor's
                clock restarts at each fetch, a --copy is one statement)   --lock-timeout <t>
  --idle-timeout <t>       Postgres: end the session if its transaction idles this long
  --application-name <n>   Postgres: the export's name in pg_stat_activity (default stream-export)
  --read-write  Postgres: allow a query that writes (the session is read-only by default)
  --max-replica-lag <t>    Postgres: refuse to start when the replica read is further behind its primary
  --max-rows-per-second <n>  --max-bytes-per-second <size>  read the source no faster (on average)
  --dry-run     estimate the rows (--count), size, parts and time from a sample of the first rows
                through the format and compression; nothing is written, no upload created`

export interface ProductionOptions {
  dryRun: boolean
  guards: PostgresGuardOptions
  rates: { maxRowsPerSecond?: number; maxBytesPerSecond?: number }
}

type Values = { [K in keyof typeof PRODUCTION_FLAGS]?: (typeof PRODUCTION_FLAGS)[K]['type'] extends 'boolean' ? boolean : string }

/** `500ms`, `30s`, `5m`, `1h` -> milliseconds (a unit is required: PostgreSQL's bare number is ms, --presign's s). */
export function parseMs(flag: string, text: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text.trim())
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'] : 0
  if (!(ms >= 1 && ms <= MAX_TIMEOUT_MS))
    throw new UsageError(`--${flag}: expected a duration with its unit such as 500ms, 30s or 5m, got ${JSON.stringify(text)}`)
  return ms
}

/** The production options of a command line; the guards only for a Postgres source. */
export function productionOptions(values: Values, postgres: boolean): ProductionOptions {
  const given = (['statement-timeout', 'lock-timeout', 'idle-timeout', 'application-name', 'max-replica-lag', 'read-write'] as const).find(
    (flag) => values[flag] !== undefined && values[flag] !== false,
  )
  if (!postgres && given !== undefined) throw new UsageError(`--${given} is for a Postgres source (--from postgres://...)`)
  const ms = (flag: 'statement-timeout' | 'lock-timeout' | 'idle-timeout' | 'max-replica-lag') =>
    values[flag] === undefined ? undefined : parseMs(flag, values[flag])
  const name = values['application-name']
  if (name !== undefined && !isApplicationName(name))
    throw new UsageError(`--application-name: expected at most 63 printable ASCII characters, got ${JSON.stringify(name)}`)
  const rows = values['max-rows-per-second']
  if (rows !== undefined && !/^[1-9]\d*$/.test(rows))
    throw new UsageError(`--max-rows-per-second: expected a positive whole number, got ${JSON.stringify(rows)}`)
  const bytes = values['max-bytes-per-second']
  return {
    dryRun: values['dry-run'] === true,
    guards: {
      statementTimeoutMs: ms('statement-timeout'),
      lockTimeoutMs: ms('lock-timeout'),
      idleInTransactionTimeoutMs: ms('idle-timeout'),
      applicationName: name,
      readOnly: values['read-write'] ? false : undefined,
      maxReplicaLagMs: ms('max-replica-lag'),
    },
    rates: {
      maxRowsPerSecond: rows === undefined ? undefined : Number(rows),
      maxBytesPerSecond: bytes === undefined ? undefined : parseSize(bytes, '--max-bytes-per-second'),
    },
  }
}
