import { rename, readFile, writeFile } from 'node:fs/promises'
import { ExportError, invalidOption } from '../core/errors.js'
import { checkObject, checkString } from '../core/options.js'
import { quoteIdentifier, type PgPool } from '../sources/postgres/connection.js'

/**
 * Where incremental exports keep their watermarks, by feed name. `save` is called only after the
 * export's commit point (see docs/incremental.md).
 */
export interface WatermarkStore {
  /** The watermark saved under `name`, or undefined before the first run. */
  load(name: string): Promise<unknown>
  /** Saves `watermark` under `name`, replacing the one before. */
  save(name: string, watermark: unknown): Promise<void>
}

/** A Redis client with promise-returning get and set (ioredis, node-redis 4). */
export interface RedisLike {
  get(key: string): Promise<string | null>
  set(key: string, value: string): Promise<unknown>
}

/**
 * Saves the watermark of an export that has committed (`landed`: where): a failure is ERR_STATE
 * saying that the next run exports the same rows again.
 */
export async function saveAfterCommit(store: WatermarkStore, name: string, watermark: unknown, landed: string): Promise<void> {
  try {
    await store.save(name, watermark)
  } catch (error) {
    throw new ExportError(
      'ERR_STATE',
      'state',
      `The export of ${JSON.stringify(name)} landed (${landed}), but its watermark was not stored: the next run exports these rows again. ${(error as Error).message}`,
      { cause: error },
    )
  }
}

const parse = (text: string, where: string): unknown => {
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw new ExportError('ERR_STATE', 'state', `The watermark in ${where} is not JSON: ${(error as Error).message}`, { cause: error })
  }
}

/**
 * Watermarks in a Postgres table (default `stream_export_watermarks`: name, watermark jsonb,
 * updated_at), created on first use.
 */
export function postgresWatermarkStore(options: { pool: PgPool; table?: string }): WatermarkStore {
  checkObject('options', options)
  const { pool, table = 'stream_export_watermarks' } = options
  if (typeof pool?.connect !== 'function') invalidOption('pool', 'a pg Pool', pool)
  checkString('table', table)
  const name = quoteIdentifier(table, true)
  type Query = (text: string, values?: unknown[]) => Promise<{ rows: Array<{ watermark: unknown }> }>
  const run = async (text: string, values: unknown[]) => {
    const client = await pool.connect()
    try {
      const query = (client.query as unknown as Query).bind(client)
      await query(`create table if not exists ${name} (name text primary key, watermark jsonb not null, updated_at timestamptz not null default now())`)
      return (await query(text, values)).rows
    } finally {
      await client.release?.()
    }
  }
  return {
    load: async (feed) => (await run(`select watermark from ${name} where name = $1`, [feed]))[0]?.watermark,
    save: async (feed, watermark) =>
      void (await run(
        `insert into ${name} (name, watermark) values ($1, $2) on conflict (name) do update set watermark = excluded.watermark, updated_at = now()`,
        [feed, JSON.stringify(watermark)],
      )),
  }
}

/** Watermarks in Redis, one key per feed (`prefix` + name; default prefix `stream-export:watermark:`). */
export function redisWatermarkStore(options: { redis: RedisLike; prefix?: string }): WatermarkStore {
  checkObject('options', options)
  const { redis, prefix = 'stream-export:watermark:' } = options
  if (typeof redis?.get !== 'function' || typeof redis.set !== 'function') invalidOption('redis', 'a Redis client (ioredis or node-redis)', redis)
  checkString('prefix', prefix)
  return {
    load: async (feed) => {
      const text = await redis.get(prefix + feed)
      return text === null ? undefined : parse(text, `Redis key ${prefix + feed}`)
    },
    save: async (feed, watermark) => void (await redis.set(prefix + feed, JSON.stringify(watermark))),
  }
}

/** Watermarks in a JSON file (`{ name: watermark }`), replaced by a rename: for cron jobs. */
export function fileWatermarkStore(options: { path: string }): WatermarkStore {
  checkObject('options', options)
  const { path } = options
  checkString('path', path)
  const all = async (): Promise<Record<string, unknown>> => {
    const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return '{}'
      throw error
    })
    return parse(text, path) as Record<string, unknown>
  }
  return {
    load: async (feed) => (await all())[feed],
    save: async (feed, watermark) => {
      const next = { ...(await all()), [feed]: watermark }
      const temp = `${path}.${process.pid}.tmp`
      await writeFile(temp, `${JSON.stringify(next, null, 2)}\n`)
      await rename(temp, path)
    },
  }
}
