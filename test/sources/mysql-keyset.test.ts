// mysqlKeysetSource against the MariaDB (or MySQL) at MYSQL_URL: pages in key order (composite keys
// too), a range, a key that holds NULL refused, and a job continued from its checkpoint over
// several runs (the Lambda handler, on S3) giving each row once.
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { Writable } from 'node:stream'
import mysql from 'mysql2'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import {
  csv,
  exportStream,
  fileWatermarkStore,
  incrementalExport,
  jsonl,
  mysqlIncrementalSource,
  mysqlKeysetSource,
  mysqlSource,
  type ExportError,
  type MysqlIncrementalWatermark,
} from '../../src/index.js'
import { createLambdaExportHandler, postgresContinuationStore } from '../../src/lambda.js'
import { invokeInProcess } from '../fixtures/lambda-runtime.js'
import { databaseUrl } from '../fixtures/postgres.js'
import { startS3, type TestS3 } from '../fixtures/s3-server.js'
import { ResumableUpload, type ExportCheckpoint } from '../../src/sinks/s3/resumable.js'
import { expectSameBytes, exportedBytes, tempDir } from '../helpers.js'

const available = process.env.MYSQL_AVAILABLE === '1'
const TABLE = 'se_mysql_keyset'
const ROWS = 300_000

let pool: mysql.Pool
const sql = (text: string, values?: unknown[]) => pool.promise().query(text, values)
const text = async (source: Parameters<typeof exportStream>[0]['source']) => {
  let out = ''
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out += chunk.toString()
      callback()
    },
  })
  await exportStream({ source, format: jsonl(), sink })
  return out
}

beforeAll(async () => {
  if (!available) return
  pool = mysql.createPool({ uri: process.env.MYSQL_URL, connectionLimit: 4 })
  await sql(`drop table if exists ${TABLE}`)
  // (grp, n): a composite key; md5 text that gzip cannot shrink much, for 5 MiB parts.
  await sql(`create table ${TABLE} (id bigint primary key, grp int not null, n int not null, h char(32), h2 char(32), unique key (grp, n))`)
  await sql(`insert into ${TABLE} select seq, seq % 7, seq, md5(seq), md5(seq + 1) from seq_1_to_${ROWS}`)
}, 60_000)
afterAll(async () => {
  if (!available) return
  await sql(`drop table if exists ${TABLE}`)
  await pool.promise().end()
})

describe.skipIf(!available)(`mysqlKeysetSource${available ? '' : ' (skipped: no MySQL/MariaDB at MYSQL_URL)'}`, () => {
  it('pages a table in key order, the same rows as one query; a composite key; a range up to a key', async () => {
    const whole = await text(mysqlSource({ pool, query: `select * from ${TABLE} where id <= 5000 order by id` }))
    const paged = mysqlKeysetSource({ pool, query: `select * from ${TABLE} where id <= 5000`, batchSize: 777 })
    expect(await text(paged)).toBe(whole)
    expect(paged.checkpoint).toBe('5000')
    expect(paged.columnTypes?.()?.[0]).toEqual({ name: 'id', type: 'INT64', nullable: false })

    const byGroup = await text(mysqlSource({ pool, query: `select * from ${TABLE} where id <= 5000 order by grp, n` }))
    expect(await text(mysqlKeysetSource({ pool, query: `select * from ${TABLE} where id <= 5000`, key: ['grp', 'n'], batchSize: 333 }))).toBe(byGroup)
    // From after (3, 1000) up to (5, 2000), inclusive.
    const range = await text(mysqlSource({ pool, query: `select * from ${TABLE} where (grp, n) > (3, 1000) and (grp, n) <= (5, 2000) order by grp, n` }))
    const ranged = await text(mysqlKeysetSource({ pool, table: TABLE, key: ['grp', 'n'], after: [3, 1000], until: [5, 2000], batchSize: 1000 }))
    expect(ranged.split('\n').length).toBeGreaterThan(80_000)
    expect(ranged).toBe(range)
  })

  it('refuses a key column that holds NULL (its rows would be lost), before any row', async () => {
    const error = (await text(mysqlKeysetSource({ pool, query: `select id, if(id = 42, null, n) as k from ${TABLE} where id <= 100`, key: 'k' })).catch(
      (e: unknown) => e,
    )) as ExportError
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('The key column k holds NULLs') })
  })

  it('a Lambda job continued over several invocations, on its checkpoint: each row once, the bytes of one plain export', async () => {
    const s3: TestS3 = await startS3()
    const pgPool = new pg.Pool({ connectionString: databaseUrl(), max: 2 })
    try {
      await postgresContinuationStore({ pool: pgPool }).get('') // (its table made)
      await pgPool.query("delete from stream_export_continuations where job_id = 'mysql-continued'")
      const queue: string[] = [JSON.stringify({ jobId: 'mysql-continued' })]
      const handler = createLambdaExportHandler({
        s3: s3.client,
        bucket: s3.bucket,
        store: postgresContinuationStore({ pool: pgPool }),
        send: async (body) => void queue.push(body),
        maxReceiveCount: 1,
        marginMs: 3800, // hands on at once: a 5 MiB part an invocation
        resolve: (_job, { after }) => ({ source: mysqlKeysetSource({ pool, table: TABLE, after, batchSize: 2000 }), format: csv() }),
      })
      const responses = await invokeInProcess(handler, queue, 4000)
      expect(responses.flatMap((response) => response.batchItemFailures)).toEqual([])
      expect(responses.length).toBeGreaterThanOrEqual(3)
      const got = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'exports/mysql-continued.csv' }))
      const whole = await exportedBytes({ source: mysqlSource({ pool, query: `select * from ${TABLE} order by id` }), format: csv() })
      expectSameBytes(Buffer.from(await got.Body!.transformToByteArray()), whole)
      expect(await s3.openUploads()).toEqual([])
    } finally {
      await pgPool.end()
      await s3.close()
    }
  }, 60_000)

  it('mysqlIncrementalSource: each run exports what was written since, a late commit within the lookback once, through incrementalExport', async () => {
    const feed = 'se_mysql_feed'
    await sql(`drop table if exists ${feed}`)
    await sql(`create table ${feed} (id int primary key, v varchar(10), updated_at datetime(6) not null, index (updated_at, id))`)
    await sql(`insert into ${feed} select seq, 'a', timestampadd(second, seq, '2026-02-01 00:00:00') from seq_1_to_2500`)
    const dir = await tempDir()
    const store = fileWatermarkStore({ path: join(dir, 'feeds.json') })
    const run = async () => {
      let out = ''
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          out += chunk.toString()
          callback()
        },
      })
      const result = await incrementalExport({
        name: feed,
        store,
        source: (after?: MysqlIncrementalWatermark) => mysqlIncrementalSource({ pool, table: feed, after, lookbackMs: 60_000, batchSize: 700 }),
        format: jsonl(),
        sink,
      })
      return {
        ids:
          out.trim() === ''
            ? []
            : out
                .trim()
                .split('\n')
                .map((line) => (JSON.parse(line) as { id: number }).id),
        watermark: result.watermark,
      }
    }
    const first = await run()
    expect(first.ids).toEqual(Array.from({ length: 2500 }, (_, i) => i + 1))
    expect(first.watermark).toMatchObject({ version: 1, column: 'updated_at', high: '2026-02-01T00:41:40.000000' })
    // Since: an update, a new row, and a row whose transaction committed late, stamped 30 s below
    // the last run's highest value (inside the lookback); one stamped 2 minutes below (outside it).
    await sql(`update ${feed} set v = 'b', updated_at = '2026-02-01 01:00:00' where id = 10`)
    await sql(`insert into ${feed} values (2501, 'a', '2026-02-01 01:00:01'), (2502, 'late', '2026-02-01 00:41:10'), (2503, 'too late', '2026-02-01 00:39:40')`)
    const second = await run()
    expect(second.ids).toEqual([2502, 10, 2501])
    const third = await run()
    expect(third.ids).toEqual([])
    expect(third.watermark).toEqual(second.watermark)
    await sql(`drop table ${feed}`)
  })

  it('a run killed after its first part: the next continues from its checkpoint, each row once (a resumable upload)', async () => {
    const s3: TestS3 = await startS3()
    try {
      const key = 'mysql/resumed.csv'
      const saved: ExportCheckpoint[] = []
      const attempt = async (checkpoint: ExportCheckpoint | undefined, failAfterParts?: number) => {
        const upload = new ResumableUpload({
          client: s3.client,
          bucket: s3.bucket,
          key,
          contentType: 'text/csv',
          partSize: () => 5 * 1024 * 1024,
          checkpoint,
          onCheckpoint: async (c) => {
            saved.push(c)
            if (failAfterParts !== undefined && c.parts.length === failAfterParts) throw new Error('worker killed')
          },
        })
        await upload.open()
        return exportStream({ source: mysqlKeysetSource({ pool, table: TABLE, after: checkpoint?.lastKey, batchSize: 5000 }), format: csv(), sink: upload })
      }
      await expect(attempt(undefined, 1)).rejects.toThrow('worker killed')
      const crashedAt = saved.at(-1)!
      expect(crashedAt.parts).toHaveLength(1)
      expect(Number(crashedAt.lastKey)).toBe(crashedAt.rows) // (ids 1..n: the key of the part's last row)
      await attempt(crashedAt)
      const got = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
      const whole = await exportedBytes({ source: mysqlSource({ pool, query: `select * from ${TABLE} order by id` }), format: csv() })
      expectSameBytes(Buffer.from(await got.Body!.transformToByteArray()), whole)
    } finally {
      await s3.close()
    }
  }, 60_000)

  it('count: the rows after `after` (up to `until`), for the progress', async () => {
    expect(await mysqlKeysetSource({ pool, table: TABLE, after: '1000', count: 'exact' }).countRows!()).toBe(ROWS - 1000)
    expect(await mysqlKeysetSource({ pool, table: TABLE, key: ['grp', 'n'], after: [3, 0], until: [3, 700], count: 'exact' }).countRows!()).toBe(100)
  })

  it('keys: text that looks like a timestamp pages as text; a key read as NULL (a zero date) fails instead of ending early', async () => {
    const keys = 'se_mysql_text_keys'
    await sql(`drop table if exists ${keys}`)
    await sql(`create table ${keys} (k varchar(30) primary key, d datetime not null)`)
    await sql(`insert into ${keys} select concat('2026-02-01T10:00:', lpad(seq, 2, '0')), '2026-02-01' from seq_0_to_59`)
    const paged = await text(mysqlKeysetSource({ pool, table: keys, key: 'k', batchSize: 7 }))
    expect(paged.trim().split('\n')).toHaveLength(60)
    const conn = await pool.promise().getConnection()
    await conn.query("set session sql_mode = ''")
    await conn.query(`update ${keys} set d = '0000-00-00 00:00:00' where k like '%:0_'`)
    conn.release()
    const error = (await text(mysqlKeysetSource({ pool, table: keys, key: ['d', 'k'], zeroDates: 'null', batchSize: 7 })).catch(
      (e: unknown) => e,
    )) as ExportError
    expect(error).toMatchObject({ code: 'ERR_SOURCE', message: expect.stringContaining('key column d is NULL') })
    await sql(`drop table ${keys}`)
  })

  it('destroyed while it is still setting up its connection: the connection goes back to the pool, its session as it was', async () => {
    const one = mysql.createPool({ uri: process.env.MYSQL_URL, connectionLimit: 1 })
    try {
      for (let i = 0; i < 5; i++) {
        const source = mysqlKeysetSource({ pool: one, table: TABLE, batchSize: 10 })
        source.resume()
        await new Promise((resolve) => setTimeout(resolve, i * 3))
        source.destroy()
        await new Promise((resolve) => source.once('close', resolve))
      }
      const [[zone]] = (await one.promise().query('select @@session.time_zone as tz')) as unknown as [[{ tz: string }]]
      expect(zone.tz).not.toBe('+00:00')
    } finally {
      await one.promise().end()
    }
  })

  it('refuses bad options before connecting', () => {
    expect(() => mysqlKeysetSource({ pool, table: TABLE, query: 'select 1' })).toThrow(/table/)
    expect(() => mysqlKeysetSource({ pool, table: TABLE, key: ['grp', 'n'], after: 5 })).toThrow(/after/)
    expect(() => mysqlKeysetSource({ pool, table: TABLE, bachSize: 5 } as never)).toThrow(/did you mean `batchSize`/)
  })
})
