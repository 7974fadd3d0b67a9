// mysqlSource against the MariaDB (or MySQL) at MYSQL_URL: every type's value exact, zero dates by
// policy, backpressure down to the socket, and an abort or a KILL QUERY that leaves no statement
// running and no connection astray.
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { DuckDBInstance } from '@duckdb/node-api'
import mysql from 'mysql2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csv, exportStream, fileSink, jsonl, mysqlSource, parquet, xlsx, type ExportError } from '../../src/index.js'
import { read, values } from '../fixtures/xlsx.js'
import { runCli } from '../fixtures/cli.js'
import { listDir, tempDir } from '../helpers.js'

const available = process.env.MYSQL_AVAILABLE === '1'
const TABLE = 'se_mysql_types'

let pool: mysql.Pool
const sql = (text: string, values?: unknown[]) =>
  pool
    .promise()
    .query(text, values)
    .then(([rows]) => rows as Array<Record<string, unknown>>)
const collect = () => {
  const chunks: Buffer[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk)
      callback()
    },
  })
  return { sink, text: () => Buffer.concat(chunks).toString(), bytes: () => Buffer.concat(chunks) }
}
/** Statements of this test's pool's connections still running a query (SHOW PROCESSLIST). */
const running = async (marker: string) =>
  (await sql('select id, info from information_schema.processlist where info like ? and id <> connection_id()', [`%${marker}%`])).filter(
    (row) => !String(row.info).includes('information_schema.processlist'),
  )

beforeAll(async () => {
  if (!available) return
  pool = mysql.createPool({ uri: process.env.MYSQL_URL, connectionLimit: 4 })
  await sql(`drop table if exists ${TABLE}`)
  await sql(`create table ${TABLE} (
    id int primary key, big bigint unsigned, neg bigint, dec65 decimal(65,30), dt datetime(6), ts timestamp(6) null, da date, y year,
    t time(3), bit1 bit(1), bits bit(10), bin varbinary(10), bl blob, j json, e enum('a','b'), s set('x','y'), tx text, g geometry,
    gen int as (id * 2) virtual, f double, ti tinyint, nn varchar(5) not null default '')`)
  const inserting = await pool.promise().getConnection()
  await inserting.query("set time_zone = '+00:00'") // (the TIMESTAMP below is 10:00 UTC)
  await inserting.query(`insert into ${TABLE} (id, big, neg, dec65, dt, ts, da, y, t, bit1, bits, bin, bl, j, e, s, tx, g, f, ti) values
    (1, 18446744073709551615, -9223372036854775808, '12345678901234567890123456789012345.123456789012345678901234567890',
     '2026-02-01 10:00:00.123456', '2026-02-01 10:00:00.654321', '2026-02-01', 2026, '-838:59:59.000', b'1', b'1010101010', x'00ff',
     x'deadbeef', '{"a": [1, 2.5, "😀"]}', 'b', 'x,y', 'héllo 😀, "quoted"\nline', ST_GeomFromText('POINT(1 2)'), 0.1, -128),
    (2, null, null, null, null, null, null, null, null, b'0', null, null, null, null, null, null, '', null, null, null)`)
  inserting.release()
}, 60_000)
afterAll(async () => {
  if (!available) return
  await sql(`drop table if exists ${TABLE}`)
  await pool.promise().end()
})

describe.skipIf(!available)(`mysqlSource${available ? '' : ' (skipped: no MySQL/MariaDB at MYSQL_URL)'}`, () => {
  it('gives every type its exact value: BIGINT UNSIGNED past 2^63, DECIMAL(65,30), DATETIME(6), TIMESTAMP in UTC, bits, bytes, JSON, utf8mb4', async () => {
    // A session in another time zone: TIMESTAMP still comes as the UTC instant, and the session is left as it was.
    const connection = mysql.createConnection({ uri: process.env.MYSQL_URL })
    await connection.promise().query("set time_zone = '+05:30'")
    const out = collect()
    const source = mysqlSource({ connection, query: `select * from ${TABLE} order by id` })
    await exportStream({ source, format: jsonl(), sink: out.sink })
    const [first, second] = out
      .text()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(first).toEqual({
      id: 1,
      big: '18446744073709551615',
      neg: '-9223372036854775808',
      dec65: '12345678901234567890123456789012345.123456789012345678901234567890',
      dt: '2026-02-01T10:00:00.123456',
      ts: '2026-02-01T10:00:00.654321+00:00', // (the session in +05:30 would show 15:30)
      da: '2026-02-01',
      y: 2026,
      t: '-838:59:59.000',
      bit1: true,
      bits: Buffer.from([0x02, 0xaa]).toString('base64'),
      bin: Buffer.from([0x00, 0xff]).toString('base64'),
      bl: Buffer.from('deadbeef', 'hex').toString('base64'),
      j: { a: [1, 2.5, '😀'] },
      e: 'b',
      s: 'x,y',
      tx: 'héllo 😀, "quoted"\nline',
      g: expect.any(String),
      gen: 2,
      f: 0.1,
      ti: -128,
      nn: '',
    })
    // GEOMETRY: MySQL's form, a 4-byte SRID and the WKB of POINT(1 2).
    expect(Buffer.from(first!.g as string, 'base64').toString('hex')).toBe('00000000' + '0101000000000000000000f03f0000000000000040')
    expect(second).toMatchObject({ id: 2, big: null, dt: null, ts: null, bit1: false, tx: '', j: null })
    const [[zone]] = (await connection.promise().query('select @@session.time_zone as tz')) as unknown as [[{ tz: string }]]
    expect(zone.tz).toBe('+05:30')
    connection.end()

    expect(source.columnTypes()).toEqual([
      { name: 'id', type: 'INT32', nullable: false },
      { name: 'big', type: 'DECIMAL', precision: 20, scale: 0 },
      { name: 'neg', type: 'INT64' },
      { name: 'dec65', type: 'STRING', numeric: true }, // (past 38 digits, Parquet readers misread a DECIMAL)
      { name: 'dt', type: 'TIMESTAMP', utc: false },
      { name: 'ts', type: 'TIMESTAMP' },
      { name: 'da', type: 'DATE' },
      { name: 'y', type: 'INT32' },
      { name: 't', type: 'STRING' },
      { name: 'bit1', type: 'BOOLEAN' },
      { name: 'bits', type: 'BYTE_ARRAY' },
      { name: 'bin', type: 'BYTE_ARRAY' },
      { name: 'bl', type: 'BYTE_ARRAY' },
      { name: 'j', type: 'JSON' },
      { name: 'e', type: 'STRING' },
      { name: 's', type: 'STRING' },
      { name: 'tx', type: 'STRING' },
      { name: 'g', type: 'BYTE_ARRAY' },
      { name: 'gen', type: 'INT32' },
      { name: 'f', type: 'DOUBLE' },
      { name: 'ti', type: 'INT32' },
      { name: 'nn', type: 'STRING', nullable: false },
    ])
  })

  it('CSV: numbers from BIGINT and DECIMAL are numbers (never formula-escaped), text quoted as RFC 4180', async () => {
    const out = collect()
    await exportStream({
      source: mysqlSource({ pool, query: `select id, neg, dec65, tx from ${TABLE} where id = ?`, params: [1] }),
      format: csv({ escapeFormulas: true }),
      sink: out.sink,
    })
    expect(out.text()).toBe(
      'id,neg,dec65,tx\n1,-9223372036854775808,12345678901234567890123456789012345.123456789012345678901234567890,"héllo 😀, ""quoted""\nline"\n',
    )
  })

  it('read alone (a Readable of rows, no batches), the same rows as through exportStream (batches)', async () => {
    const rows: unknown[] = []
    for await (const row of mysqlSource({ pool, query: 'select seq as id, md5(seq) as h from seq_1_to_2500', batchSize: 1000 })) rows.push(row)
    const out = collect()
    await exportStream({
      source: mysqlSource({ pool, query: 'select seq as id, md5(seq) as h from seq_1_to_2500', batchSize: 1000 }),
      format: jsonl(),
      sink: out.sink,
    })
    expect(rows).toEqual(
      out
        .text()
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as unknown),
    )
    expect(rows).toHaveLength(2500)
  })

  it("zero dates are refused, naming the column, unless zeroDates: 'null'", async () => {
    const conn = await pool.promise().getConnection()
    await conn.query("set session sql_mode = ''")
    await conn.query('create temporary table se_zero (id int, da date, dt datetime)')
    await conn.query("insert into se_zero values (1, '0000-00-00', '2026-00-10 00:00:00'), (2, '2026-02-01', '2026-02-01 00:00:00')")
    const refused = await exportStream({
      source: mysqlSource({ connection: conn, query: 'select * from se_zero order by id' }),
      format: jsonl(),
      sink: collect().sink,
    }).catch((error: ExportError) => error)
    expect(refused).toMatchObject({ code: 'ERR_SOURCE', message: expect.stringContaining('Column da holds the zero date 0000-00-00') })
    const conn2 = await pool.promise().getConnection() // (the refused query's connection was closed: its state is unknown)
    await conn2.query("set session sql_mode = ''")
    await conn2.query('create temporary table se_zero (id int, da date, dt datetime)')
    await conn2.query("insert into se_zero values (1, '0000-00-00', '2026-00-10 00:00:00'), (2, '2026-02-01', '2026-02-01 00:00:00')")
    const out = collect()
    await exportStream({
      source: mysqlSource({ connection: conn2, query: 'select * from se_zero order by id', zeroDates: 'null' }),
      format: jsonl(),
      sink: out.sink,
    })
    expect(out.text()).toBe('{"id":1,"da":null,"dt":null}\n{"id":2,"da":"2026-02-01","dt":"2026-02-01T00:00:00"}\n')
    conn2.release()
    conn.release()
  })

  it('backpressure reaches the socket: a sink that stops reading holds back the server, not memory', async () => {
    const marker = 'se_mysql_backpressure'
    const source = mysqlSource({ pool, query: `select seq as id, md5(seq) as h, '${marker}' as m from seq_1_to_2000000`, batchSize: 1000 })
    const stuck = new Writable({ objectMode: true, highWaterMark: 1, write: () => {} }) // never calls back
    const exported = exportStream({ source, format: jsonl(), sink: stuck })
    await new Promise((resolve) => setTimeout(resolve, 1500))
    // What the source holds: its buffer (batchSize rows) and what the socket's last chunk carried.
    expect(source.readableLength).toBeLessThan(5000)
    expect(await running(marker)).toHaveLength(1) // the statement waits on the paused socket
    stuck.destroy(new Error('client went away'))
    await expect(exported).rejects.toMatchObject({ code: 'ERR_SINK' })
    await expect.poll(() => running(marker), { timeout: 5000, interval: 100 }).toEqual([])
  })

  it('1M rows through a slow sink in flat memory: the server is not read ahead', async () => {
    let bytes = 0
    let writes = 0
    const slow = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length
        // Every 10th write waits a while: the sink is slower than the server.
        if (++writes % 10 === 0) setTimeout(callback, 2)
        else callback()
      },
    })
    let total: number | undefined
    // What the source holds ahead of the export, sampled as it runs (batches of 1000 rows): the
    // heap's own figure counts garbage not yet collected, which differs by Node version and load.
    const source = mysqlSource({ pool, query: "select seq as id, md5(seq) as h, concat(seq, '-', md5(seq + 1)) as t from seq_1_to_1000000", count: 'exact' })
    let ahead = 0
    const sampler = setInterval(() => (ahead = Math.max(ahead, source.readableLength)), 2)
    try {
      const result = await exportStream({ source, format: csv(), sink: slow, onProgress: (p) => void (total = p.totalRows) })
      expect(result.rows).toBe(1_000_000)
      expect(total).toBe(1_000_000) // (count: 'exact', on a session of its own)
    } finally {
      clearInterval(sampler)
    }
    expect(bytes).toBeGreaterThan(75_000_000)
    // ~80 MB went through; at most a batch or two waited in the source (not paused: hundreds).
    expect(ahead).toBeLessThanOrEqual(3)
  }, 60_000)

  it('count: the total behind the progress, exact or estimated, counted on a session beside the rows', async () => {
    for (const count of ['exact', 'estimate'] as const) {
      const source = mysqlSource({ pool, query: 'select seq as id from seq_1_to_50000 where seq % 2 = 0', count })
      const result = await exportStream({ source, format: csv(), sink: collect().sink })
      expect(result.rows).toBe(25_000)
      if (count === 'exact') expect(await source.countRows()).toBe(25_000)
      else expect(await source.countRows()).toBeGreaterThan(0)
    }
  })

  it('an abort mid-export ends the statement on the server, leaves no file and the pool whole', async () => {
    const marker = 'se_mysql_abort'
    const controller = new AbortController()
    const dir = await tempDir()
    const exported = exportStream({
      source: mysqlSource({ pool, query: `select seq as id, md5(seq) as h, '${marker}' as m from seq_1_to_5000000` }),
      format: csv(),
      gzip: true,
      sink: fileSink({ path: join(dir, 'aborted.csv.gz') }),
      signal: controller.signal,
      onProgress: (p) => void (p.rows > 20_000 && controller.abort()),
      progressIntervalMs: 10,
    })
    await expect(exported).rejects.toMatchObject({ code: 'ERR_ABORTED' })
    await expect.poll(() => running(marker), { timeout: 5000, interval: 100 }).toEqual([])
    expect(await listDir(dir)).toEqual([])
    expect(await sql('select 1 as ok')).toEqual([{ ok: 1 }])

    // A connection of the caller's: the statement is ended from a session of its own, and the
    // connection is the caller's again, its session as it was.
    const connection = mysql.createConnection({ uri: process.env.MYSQL_URL })
    await connection.promise().query("set time_zone = '+05:30'")
    const stop = new AbortController()
    const again = exportStream({
      source: mysqlSource({ connection, query: `select seq as id, md5(seq) as h, '${marker}' as m from seq_1_to_5000000` }),
      format: csv(),
      sink: collect().sink,
      signal: stop.signal,
      onProgress: (p) => void (p.rows > 20_000 && stop.abort()),
      progressIntervalMs: 10,
    })
    await expect(again).rejects.toMatchObject({ code: 'ERR_ABORTED' })
    expect(await running(marker)).toEqual([])
    const [[zone]] = (await connection.promise().query('select @@session.time_zone as tz')) as unknown as [[{ tz: string }]]
    expect(zone.tz).toBe('+05:30')
    connection.end()
  })

  it('a KILL QUERY from another session fails the export with ERR_SOURCE and the server error', async () => {
    const marker = 'se_mysql_killed'
    const source = mysqlSource({ pool, query: `select seq as id, md5(seq) as h, '${marker}' as m from seq_1_to_5000000`, batchSize: 100 })
    const slow = new Writable({ objectMode: true, write: (_chunk, _encoding, callback) => void setTimeout(callback, 1) })
    const exported = exportStream({ source, format: jsonl(), sink: slow })
    await expect.poll(() => running(marker), { timeout: 5000, interval: 50 }).toHaveLength(1)
    const [victim] = await running(marker)
    await sql(`kill query ${Number(victim!.id)}`)
    const error = (await exported.catch((e: unknown) => e)) as ExportError
    expect(error).toMatchObject({ code: 'ERR_SOURCE' })
    expect(String((error.cause as Error)?.message ?? error.message)).toMatch(/interrupted/i)
    await expect.poll(() => running(marker), { timeout: 5000, interval: 100 }).toEqual([])
  })

  it('the CLI: --from mysql:// or mariadb:// ($DATABASE_URL too), the same bytes as the source; --copy refused', async () => {
    const query = `select id, big, dec65, dt, tx from ${TABLE} order by id`
    const expected = collect()
    await exportStream({ source: mysqlSource({ pool, query }), format: csv(), sink: expected.sink })
    const url = process.env.MYSQL_URL!
    const run = await runCli(['--from', url, '--query', query, '--to', '-', '--format', 'csv', '--quiet'])
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(Buffer.from(run.stdout, 'latin1').toString()).toBe(expected.text())
    const mariadb = await runCli(['--query', query, '--to', '-', '--format', 'csv', '--quiet'], { DATABASE_URL: url.replace(/^mysql:/, 'mariadb:') })
    expect(Buffer.from(mariadb.stdout, 'latin1').toString()).toBe(expected.text())
    const copy = await runCli(['--from', url, '--query', query, '--to', '-', '--copy'])
    expect(copy.code).toBe(2)
    expect(copy.stderr).toContain('--copy is not offered for MySQL')
  })

  it('a connection killed mid-export (KILL CONNECTION) fails it with ERR_SOURCE; the pool goes on', async () => {
    const marker = 'se_mysql_conn_killed'
    const source = mysqlSource({ pool, query: `select seq as id, md5(seq) as h, '${marker}' as m from seq_1_to_5000000`, batchSize: 100 })
    const slow = new Writable({ objectMode: true, write: (_chunk, _encoding, callback) => void setTimeout(callback, 1) })
    const exported = exportStream({ source, format: jsonl(), sink: slow })
    await expect.poll(() => running(marker), { timeout: 5000, interval: 50 }).toHaveLength(1)
    const [victim] = await running(marker)
    await sql(`kill connection ${Number(victim!.id)}`)
    await expect(exported).rejects.toMatchObject({ code: 'ERR_SOURCE' })
    // (A killed session winds down on the server a moment after its client saw the end.)
    await expect.poll(() => running(marker), { timeout: 5000, interval: 100 }).toEqual([])
    expect(await sql('select 2 as ok')).toEqual([{ ok: 2 }])
  })

  it("a pool's own settings (big numbers as strings, nested tables, rows as arrays, latin1 results) change no value, and a caller's connection stays open", async () => {
    const connection = mysql.createConnection({
      uri: process.env.MYSQL_URL,
      supportBigNumbers: true,
      bigNumberStrings: true,
      nestTables: true,
      rowsAsArray: true,
      dateStrings: true,
      decimalNumbers: true,
      charset: 'LATIN1_SWEDISH_CI',
    })
    const out = collect()
    await exportStream({
      source: mysqlSource({ connection, query: `select id, big, dec65, dt, ts, tx from ${TABLE} where id = 1` }),
      format: jsonl(),
      sink: out.sink,
    })
    expect(JSON.parse(out.text())).toEqual({
      id: 1,
      big: '18446744073709551615',
      dec65: '12345678901234567890123456789012345.123456789012345678901234567890',
      dt: '2026-02-01T10:00:00.123456',
      ts: '2026-02-01T10:00:00.654321+00:00',
      tx: 'héllo ?, "quoted"\nline', // (latin1 results: the server sends the emoji as ?)
    })
    // Still open, its session as it was (net_write_timeout is a BIGINT the pool reads as text).
    const [[session]] = (await connection
      .promise()
      .query({ sql: 'select @@session.net_write_timeout as wt', rowsAsArray: false, nestTables: false })) as unknown as [[{ wt: string }]]
    expect(session.wt).toBe('60')
    connection.end()
  })

  it('a cell that cannot be read (a zero date among the first of 100M rows) fails the export at once, the statement ended', async () => {
    const marker = 'se_mysql_bad_cell'
    const conn = await pool.promise().getConnection()
    await conn.query("set session sql_mode = ''")
    await conn.query('drop table if exists se_mysql_zero')
    await conn.query('create table se_mysql_zero (id int primary key, da date)')
    await conn.query("insert into se_mysql_zero select seq, if(seq = 1, '0000-00-00', '2026-02-01') from seq_1_to_20")
    conn.release()
    const started = Date.now()
    // The table joined row by row to a sequence: the zero date comes among the first rows.
    const error = (await exportStream({
      source: mysqlSource({ pool, query: `select z.id, z.da, s.seq, '${marker}' as m from se_mysql_zero z straight_join seq_1_to_5000000 s` }),
      format: csv(),
      sink: collect().sink,
    }).catch((e: unknown) => e)) as ExportError
    expect(error).toMatchObject({ code: 'ERR_SOURCE', message: expect.stringContaining('zero date') })
    expect(Date.now() - started).toBeLessThan(5000) // (not after the 100M rows: they take 15 s to read)
    await expect.poll(() => running(marker), { timeout: 5000, interval: 100 }).toEqual([])
    await sql('drop table se_mysql_zero')
  })

  it('refuses bad options before connecting', () => {
    expect(() => mysqlSource({ connection: pool as never, query: 'select 1' })).toThrow(/not a pool/)
    expect(() => mysqlSource({ query: 'select 1' })).toThrow(/pool/)
    expect(() => mysqlSource({ pool, query: 'select 1', zeroDates: 'zero' as never })).toThrow(/zeroDates/)
    expect(() => mysqlSource({ pool, query: 'select 1', batchsize: 5 } as never)).toThrow(/did you mean `batchSize`/)
  })
})

describe.skipIf(!available)('mysqlSource into typed formats', () => {
  it('Parquet, read back by DuckDB: every value exact, typed (TIMESTAMP in UTC, DATETIME as wall clock, DECIMAL(20,0), bytes)', async () => {
    const dir = await tempDir()
    const output = join(dir, 'types.parquet')
    await exportStream({
      source: mysqlSource({ pool, query: `select * from ${TABLE} order by id` }),
      format: parquet({ workers: 0 }),
      sink: fileSink({ path: output }),
    })
    const instance = await DuckDBInstance.create(':memory:')
    const connection = await instance.connect()
    try {
      const read = async (query: string) => (await connection.runAndReadAll(query)).getRowObjectsJS()
      const [first] = await read(
        `SELECT big::VARCHAR AS big, neg::VARCHAR AS neg, dec65, strftime(dt, '%Y-%m-%d %H:%M:%S.%f') AS dt, epoch_us(ts) AS ts, da::VARCHAR AS da,
           y, t, bit1, hex(bits) AS bits, hex(bin) AS bin, hex(bl) AS bl, j, e, s, tx, hex(g) AS g, gen, f, ti, nn FROM read_parquet('${output}') ORDER BY id`,
      )
      expect(first).toEqual({
        big: '18446744073709551615',
        neg: '-9223372036854775808',
        dec65: '12345678901234567890123456789012345.123456789012345678901234567890',
        dt: '2026-02-01 10:00:00.123456',
        ts: BigInt(Date.UTC(2026, 1, 1, 10)) * 1000n + 654_321n,
        da: '2026-02-01',
        y: 2026,
        t: '-838:59:59.000',
        bit1: true,
        bits: '02AA',
        bin: '00FF',
        bl: 'DEADBEEF',
        j: '{"a":[1,2.5,"😀"]}',
        e: 'b',
        s: 'x,y',
        tx: 'héllo 😀, "quoted"\nline',
        g: '000000000101000000000000000000F03F0000000000000040',
        gen: 2,
        f: 0.1,
        ti: -128,
        nn: '',
      })
      const described = await read(`DESCRIBE SELECT * FROM read_parquet('${output}')`)
      expect(Object.fromEntries(described.map((row) => [row.column_name, row.column_type]))).toMatchObject({
        big: 'DECIMAL(20,0)',
        neg: 'BIGINT',
        dec65: 'VARCHAR',
        dt: 'TIMESTAMP',
        ts: 'TIMESTAMP WITH TIME ZONE',
        da: 'DATE',
        bit1: 'BOOLEAN',
        bl: 'BLOB',
        j: 'JSON',
      })
    } finally {
      connection.closeSync()
      instance.closeSync()
    }
  })

  it('XLSX, read back by exceljs: every type, numbers as numbers, exact big numbers as text, dates as dates, bytes as base64', async () => {
    const out = collect()
    await exportStream({ source: mysqlSource({ pool, query: `select * from ${TABLE} order by id` }), format: xlsx(), sink: out.sink })
    const book = await read(out.bytes())
    const [header, first] = values(book.worksheets[0]!)
    expect(header).toEqual([
      'id',
      'big',
      'neg',
      'dec65',
      'dt',
      'ts',
      'da',
      'y',
      't',
      'bit1',
      'bits',
      'bin',
      'bl',
      'j',
      'e',
      's',
      'tx',
      'g',
      'gen',
      'f',
      'ti',
      'nn',
    ])
    const base64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64')
    expect(first).toEqual([
      1,
      '18446744073709551615',
      '-9223372036854775808',
      '12345678901234567890123456789012345.123456789012345678901234567890',
      new Date(Date.UTC(2026, 1, 1, 10, 0, 0, 123)),
      new Date(Date.UTC(2026, 1, 1, 10, 0, 0, 654)),
      new Date(Date.UTC(2026, 1, 1)),
      2026,
      '-838:59:59.000',
      true,
      base64('02aa'),
      base64('00ff'),
      base64('deadbeef'),
      '{"a":[1,2.5,"😀"]}',
      'b',
      'x,y',
      'héllo 😀, "quoted"\nline',
      base64('000000000101000000000000000000f03f0000000000000040'),
      2,
      0.1,
      -128,
      null,
    ])
  })
})
