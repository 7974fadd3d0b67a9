#!/usr/bin/env node
// stream-export: the library's main job from a shell. Credentials come from the environment
// (the URL, AWS_* variables and the AWS default chain) and are never printed.
import { availableParallelism, constants } from 'node:os'
import { readFile, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { Writable } from 'node:stream'
import { parseArgs } from 'node:util'
import { ExportError, type ExportErrorCode } from './errors.js'
import { exportStream, type ExportResult } from './export-stream.js'
import type { Location } from './types.js'
import { csv } from './formats/csv.js'
import { jsonArray } from './formats/json-array.js'
import { jsonl } from './formats/jsonl.js'
import { parquet } from './formats/parquet.js'
import { xlsx } from './formats/xlsx.js'
import { loadOptional } from './optional.js'
import { fileSink } from './sinks/file.js'
import { presignDownload } from './sinks/presign.js'
import { s3Sink } from './sinks/s3.js'
import { mongoSource } from './sources/mongo.js'
import { mongoShardedSource } from './sources/mongo-sharded.js'
import { postgresSource } from './sources/postgres.js'
import { postgresCopySource } from './sources/postgres-copy.js'
import { postgresShardedSource } from './sources/postgres-sharded.js'
import { postgresIncrementalSource, type IncrementalWatermark } from './sources/postgres-incremental.js'
import { incrementalExport } from './incremental-export.js'
import { fileWatermarkStore, postgresWatermarkStore, type WatermarkStore } from './watermark-store.js'
import pg from 'pg'
import { csvSource } from './sources/csv-file.js'
import { jsonlSource } from './sources/jsonl-file.js'
import type { Progress } from './stages/progress.js'

const USAGE = `Usage: stream-export [--from <url|file>] (--query <sql|@file|-> | --collection <name> [--filter <json>])
                     --to <file|s3://bucket/key|-> [options]

Source
  --from        postgres://..., mongodb://..., or a CSV / JSONL file (.csv, .jsonl, .ndjson, also .gz).
                Default: $DATABASE_URL with --query, $MONGODB_URL with --collection (keeps the
                password out of \`ps\`). A password in a URL is never printed.
  --query       SQL for Postgres; @report.sql reads it from a file, - from standard input
  --query-file  the same as --query @file
  --copy        Postgres COPY fast path (CSV only: the server writes the CSV)
  --collection  a MongoDB collection      --filter  its filter (extended JSON)
  --count       exact | estimate | none: the total behind the progress bar (default: estimate)

Shards (key ranges read at once on worker threads, docs/shards.md)
  --shards <n|auto>  n ranges (auto: one per core). Postgres: --table, rows in --key order (default
                id), all in one snapshot; --query, if given, is a query over that table to read
                instead (its result includes the key columns). MongoDB: --collection in _id order

Incremental (Postgres; each run exports the rows written since the previous one, docs/incremental.md)
  --since-state <file.json | postgres[:table]>  where the watermark is kept: a JSON file, or a table
                in the source database (default stream_export_watermarks); stored after the commit
  --table       the table to export (instead of --query)   --feed  the watermark's name (default: --table)
  --order-by    output order, e.g. updated_at               --key   primary key column(s) (default: id)

Destination
  --to          a file path (missing folders are created), s3://bucket/key, or - for standard output
  --format      csv | jsonl | json | parquet | xlsx. Default: from the --to extension, else csv
  --gzip        gzip the output (on every core). Default: on when --to ends in .gz
  --endpoint    S3-compatible store URL (MinIO, R2, Ceph): path-style, checksums only when required
  --presign     after an S3 export, print a presigned download URL valid this long (3600s, 30m, 24h, 7d)
  --split-rows <n>     write parts of n rows each (statements-00001.csv.gz, ...) and a manifest
  --split-bytes <size> write parts of about this size as stored (100MB, 1GiB); with --split-rows too

CSV (--columns and --no-header also for XLSX)
  --delimiter <c>   --no-header   --null <text>   --excel (BOM, CRLF, formula escaping)   --bom
  --columns a,b,c   (order and subset of the columns)

Output
  --quiet       no progress and no summary      --json   print the result as JSON
  -h, --help    this text                       --version

Exit codes: 0 done, 2 bad arguments, 3 source failed, 4 format failed, 5 destination failed,
6 watermark not loaded or stored (after a commit: the next run repeats these rows),
130/143/129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (nothing is left behind), 1 anything else.`

const EXIT: Partial<Record<ExportErrorCode, number>> = {
  ERR_INVALID_OPTION: 2,
  ERR_SOURCE: 3,
  ERR_TRANSFORM: 4,
  ERR_FORMAT: 4,
  ERR_SINK: 5,
  ERR_ABORTED: 130,
  ERR_STATE: 6,
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

class UsageError extends Error {}

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

/** `90s`, `30m`, `24h`, `7d`, or plain seconds -> seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text)
  if (!m) throw new UsageError(`--presign: expected a duration such as 3600s, 30m, 24h or 7d, got ${JSON.stringify(text)}`)
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd']
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 }

/** `100MB`, `1.5GB`, `512MiB`, or plain bytes -> bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = SIZE_UNITS[m?.[2]?.toLowerCase() ?? '-']
  const bytes = m && unit ? Math.round(Number(m[1]) * unit) : 0
  if (!(bytes >= 1 && Number.isSafeInteger(bytes)))
    throw new UsageError(`--split-bytes: expected a size such as 100MB, 1GiB or 5000000, got ${JSON.stringify(text)}`)
  return bytes
}

const formatDuration = (ms: number) => {
  const s = Math.round(ms / 1000)
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`
}
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`

/** One progress line: a bar when the total is known, else counts and rate. */
export function progressLine(p: Progress, width = 24): string {
  const rate = `${Math.round(p.rowsPerSecond).toLocaleString('en')} rows/s`
  const rows = `${p.rows.toLocaleString('en')} rows`
  if (p.percent === undefined) return `${rows}  ${rate}  ${mb(p.bytes)}`
  const filled = Math.round((p.percent / 100) * width)
  const eta = p.etaMs === undefined ? '' : `  ETA ${formatDuration(p.etaMs)}`
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.percent.toFixed(1).padStart(5)}%  ${rows}  ${rate}${eta}  ${mb(p.bytes)}`
}

const FORMATS = ['csv', 'jsonl', 'json', 'parquet', 'xlsx'] as const
type FormatName = (typeof FORMATS)[number]
/** File extensions and the format they mean. */
const EXTENSIONS: Record<string, FormatName> = { csv: 'csv', jsonl: 'jsonl', ndjson: 'jsonl', json: 'json', parquet: 'parquet', xlsx: 'xlsx' }

/** The format and compression a file name says: `x.csv.gz` -> csv, gzip. */
export function formatOfName(name: string): { format?: FormatName; gzip: boolean } {
  const m = /\.([a-z]+)(\.gz)?$/i.exec(name)
  if (!m) return { gzip: /\.gz$/i.test(name) }
  return { format: EXTENSIONS[m[1]!.toLowerCase()], gzip: Boolean(m[2]) }
}

interface Options {
  from: string
  query?: string
  collection?: string
  filter?: string
  copy: boolean
  count: 'exact' | 'estimate' | 'none'
  format: FormatName
  gzip: boolean
  to: string
  presign?: string
  endpoint?: string
  delimiter?: string
  header: boolean
  null?: string
  excel: boolean
  bom: boolean
  columns?: string[]
  quiet: boolean
  json: boolean
  split?: { rows?: number; bytes?: number }
  incremental?: { state: string; table: string; feed: string; orderBy?: string[]; key: string[] }
  shards?: { count: number; table?: string; key: string[] }
}

class HelpRequested extends Error {}
class VersionRequested extends Error {}

async function parse(argv: string[], stdin: NodeJS.ReadableStream): Promise<Options> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        from: { type: 'string' },
        query: { type: 'string' },
        'query-file': { type: 'string' },
        copy: { type: 'boolean', default: false },
        collection: { type: 'string' },
        filter: { type: 'string' },
        count: { type: 'string', default: 'estimate' },
        'since-state': { type: 'string' },
        table: { type: 'string' },
        feed: { type: 'string' },
        'order-by': { type: 'string' },
        key: { type: 'string' },
        shards: { type: 'string' },
        format: { type: 'string' },
        gzip: { type: 'boolean' },
        to: { type: 'string' },
        presign: { type: 'string' },
        'split-rows': { type: 'string' },
        'split-bytes': { type: 'string' },
        endpoint: { type: 'string' },
        delimiter: { type: 'string' },
        'no-header': { type: 'boolean', default: false },
        null: { type: 'string' },
        excel: { type: 'boolean', default: false },
        bom: { type: 'boolean', default: false },
        columns: { type: 'string' },
        quiet: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', default: false },
      },
      strict: true,
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  const { values } = parsed
  if (values.help) throw new HelpRequested()
  if (values.version) throw new VersionRequested()
  if (!values.to) throw new UsageError('--to is required')

  // The SQL: inline, @file, --query-file, or - for standard input.
  if (values['query-file'] !== undefined) {
    if (values.query !== undefined) throw new UsageError('give --query or --query-file, not both')
    values.query = `@${values['query-file']}`
  }
  let query = values.query
  if (query === '-') query = await text(stdin)
  else if (query?.startsWith('@')) {
    query = await readFile(query.slice(1), 'utf8').catch((error: Error) => {
      throw new UsageError(`--query: cannot read ${JSON.stringify(query!.slice(1))}: ${error.message}`)
    })
  }
  if (query !== undefined && query.trim() === '') throw new UsageError('--query: the query is empty')

  // The source: --from, or the connection from the environment (never only in argv, where ps shows it).
  const list = (text: string) => text.split(',').map((c) => c.trim())
  let incremental: Options['incremental']
  let shards: Options['shards']
  const incrementalOnly = (['table', 'feed', 'order-by', 'key'] as const).find((name) => values[name] !== undefined)
  if (values.shards !== undefined) {
    if (values['since-state'] !== undefined || values.copy) throw new UsageError('--shards reads key ranges: drop --since-state and --copy')
    if (!values.table && values.collection === undefined) throw new UsageError('--shards splits a table or a collection: give --table or --collection')
    if (values.table && values.collection !== undefined) throw new UsageError('--shards: give --table (Postgres) or --collection (MongoDB), not both')
    if (values.collection !== undefined && values.key !== undefined) throw new UsageError('--key is for a Postgres --table: MongoDB ranges are of _id')
    const extra = (['feed', 'order-by'] as const).find((name) => values[name] !== undefined)
    if (extra) throw new UsageError(`--${extra} is for an incremental export (--since-state), not --shards`)
    if (values.shards !== 'auto' && !/^[1-9]\d*$/.test(values.shards))
      throw new UsageError(`--shards: expected a positive whole number or auto, got ${JSON.stringify(values.shards)}`)
    shards = { count: values.shards === 'auto' ? availableParallelism() : Number(values.shards), table: values.table, key: list(values.key ?? 'id') }
  } else if (values['since-state'] === undefined) {
    if (incrementalOnly) throw new UsageError(`--${incrementalOnly} is for an incremental export (give --since-state) or a sharded one (--shards)`)
  } else {
    if (!values.table) throw new UsageError('--since-state exports a table: give --table (instead of --query)')
    if (query !== undefined || values.collection !== undefined || values.copy)
      throw new UsageError('--since-state exports a Postgres --table: drop --query, --collection and --copy')
    incremental = {
      state: values['since-state'],
      table: values.table,
      feed: values.feed ?? values.table,
      orderBy: values['order-by'] === undefined ? undefined : list(values['order-by']),
      key: list(values.key ?? 'id'),
    }
  }
  const from =
    values.from ??
    (query !== undefined || incremental || shards?.table ? process.env.DATABASE_URL : values.collection !== undefined ? process.env.MONGODB_URL : undefined)
  if (!from) throw new UsageError('--from is required (or DATABASE_URL with --query, MONGODB_URL with --collection)')
  if (incremental && !/^postgres(ql)?:\/\//i.test(from)) throw new UsageError('--since-state needs a Postgres --from (postgres://...)')
  if (shards?.table && !/^postgres(ql)?:\/\//i.test(from)) throw new UsageError('--shards --table needs a Postgres --from (postgres://...)')

  // Format and compression: from the options, else from the destination's name; never contradicting it.
  const named = values.to === '-' ? { gzip: false } : formatOfName(values.to.replace(/^s3:\/\/[^/]*\//, ''))
  if (values.format !== undefined && !FORMATS.includes(values.format as FormatName)) {
    throw new UsageError(`--format: expected one of ${FORMATS.join(', ')}, got ${JSON.stringify(values.format)}`)
  }
  const format = (values.format as FormatName | undefined) ?? named.format ?? 'csv'
  if (named.format !== undefined && named.format !== format) {
    throw new UsageError(`--format ${format} contradicts --to ${JSON.stringify(values.to)} (a .${extensionOf(named.format)} name): change one of them`)
  }
  const gzip = values.gzip ?? named.gzip
  if (values.to !== '-' && (named.format !== undefined || named.gzip) && gzip !== named.gzip) {
    throw new UsageError(`--gzip contradicts --to ${JSON.stringify(values.to)}: ${gzip ? 'add .gz to the name' : 'the name ends in .gz'}`)
  }
  if (gzip && format === 'parquet') throw new UsageError('--gzip: Parquet compresses itself; drop --gzip (or the .gz)')
  if (gzip && format === 'xlsx') throw new UsageError('--gzip: an XLSX workbook is a ZIP already; drop --gzip (or the .gz)')

  const csvOptions = ['delimiter', 'null', 'columns']
    .filter((name) => values[name as 'delimiter'] !== undefined)
    .concat(['no-header', 'excel', 'bom'].filter((name) => values[name as 'excel'] === true))
  // --columns and --no-header apply to XLSX sheets too.
  const refused = format === 'xlsx' ? csvOptions.filter((name) => name !== 'columns' && name !== 'no-header') : format === 'csv' ? [] : csvOptions
  if (refused.length > 0) throw new UsageError(`--${refused[0]} is a CSV option; the format is ${format}`)
  if (values.copy) {
    if (format !== 'csv') throw new UsageError(`--copy writes CSV (the server's COPY); the format is ${format}`)
    const unsupported = csvOptions.find((name) => name !== 'no-header')
    if (unsupported) throw new UsageError(`--${unsupported} is not available with --copy (PostgreSQL writes the CSV)`)
  }
  if (!['exact', 'estimate', 'none'].includes(values.count))
    throw new UsageError(`--count: expected exact, estimate or none, got ${JSON.stringify(values.count)}`)
  if (values.presign !== undefined && !values.to.startsWith('s3://')) throw new UsageError('--presign needs an s3:// destination')
  let split: Options['split']
  if (values['split-rows'] !== undefined || values['split-bytes'] !== undefined) {
    if (values.to === '-') throw new UsageError('--split-rows and --split-bytes write files or objects: give --to a file name or s3:// key')
    if (values.copy) throw new UsageError('--copy streams the bytes of one COPY: it cannot be split between rows; drop --copy')
    const rows = values['split-rows']
    if (rows !== undefined && !/^[1-9]\d*$/.test(rows)) throw new UsageError(`--split-rows: expected a positive whole number, got ${JSON.stringify(rows)}`)
    split = { rows: rows === undefined ? undefined : Number(rows), bytes: values['split-bytes'] === undefined ? undefined : parseSize(values['split-bytes']) }
  }
  if (values.to.startsWith('s3://') && !/^s3:\/\/[^/]+\/.+/.test(values.to))
    throw new UsageError(`--to: expected s3://bucket/key, got ${JSON.stringify(values.to)} (no key)`)

  return {
    from,
    query,
    collection: values.collection,
    filter: values.filter,
    copy: values.copy,
    count: values.count as Options['count'],
    format,
    gzip,
    to: values.to,
    presign: values.presign,
    endpoint: values.endpoint,
    delimiter: values.delimiter,
    header: !values['no-header'],
    null: values.null,
    excel: values.excel,
    bom: values.bom,
    columns: values.columns?.split(',').map((c) => c.trim()),
    quiet: values.quiet,
    json: values.json,
    split,
    incremental,
    shards,
  }
}

const extensionOf = (format: FormatName) => (format === 'jsonl' ? 'jsonl' : format)

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let result = ''
  for await (const chunk of stream) result += chunk.toString()
  return result
}

function makeFormat(options: Options) {
  switch (options.format) {
    case 'csv':
      return csv({
        header: options.header,
        ...(options.excel ? { excel: true } : {}),
        ...(options.bom ? { bom: true } : {}),
        ...(options.delimiter !== undefined ? { delimiter: options.delimiter } : {}),
        ...(options.null !== undefined ? { nullValue: options.null } : {}),
        ...(options.columns ? { columns: options.columns } : {}),
      })
    case 'jsonl':
      return jsonl()
    case 'json':
      return jsonArray()
    case 'parquet':
      return parquet()
    case 'xlsx':
      return xlsx({ header: options.header, ...(options.columns ? { columns: options.columns } : {}) })
  }
}

/** The watermark store of --since-state: a JSON file, or `postgres[:table]` in the source database. */
function openStore(options: Options, cleanups: Array<() => Promise<unknown>>): WatermarkStore {
  const state = options.incremental!.state
  const table = /^postgres(?::(.+))?$/.exec(state)
  if (!table) return fileWatermarkStore({ path: state })
  const pool = new pg.Pool({ connectionString: options.from, max: 1 })
  cleanups.push(() => pool.end())
  return postgresWatermarkStore({ pool, ...(table[1] ? { table: table[1] } : {}) })
}

async function openSource(options: Options, cleanups: Array<() => Promise<unknown>>) {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(options.from)?.[1]?.toLowerCase()
  const count = options.count === 'none' ? undefined : options.count
  if (options.shards?.table) {
    const { count: shards, table, key } = options.shards
    return postgresShardedSource({ connectionString: options.from, table, key, shards, select: options.query, count })
  }
  if (scheme === 'postgres' || scheme === 'postgresql') {
    if (!options.query || options.collection) throw new UsageError('a Postgres source takes --query (and no --collection)')
    if (options.copy) return postgresCopySource({ connectionString: options.from, text: options.query, header: options.header })
    return postgresSource({ connectionString: options.from, text: options.query, count })
  }
  if (scheme === 'mongodb' || scheme === 'mongodb+srv') {
    if (!options.collection || options.query) throw new UsageError('a MongoDB source takes --collection (and no --query)')
    if (options.copy) throw new UsageError('--copy is for Postgres')
    const { MongoClient, BSON } = loadOptional<typeof import('mongodb')>('mongodb', 'mongodb')
    let filter: Record<string, unknown>
    try {
      filter = options.filter ? (BSON.EJSON.parse(options.filter) as Record<string, unknown>) : {}
    } catch (error) {
      throw new UsageError(`--filter: not valid (extended) JSON: ${(error as Error).message}`)
    }
    const client = new MongoClient(options.from, { serverSelectionTimeoutMS: 10_000 })
    cleanups.push(() => client.close())
    try {
      await client.connect()
    } catch (error) {
      throw new ExportError('ERR_SOURCE', 'source', `Cannot connect to MongoDB: ${(error as Error).message}`, { cause: error })
    }
    if (options.shards) {
      const clientOptions = { serverSelectionTimeoutMS: 10_000 }
      return mongoShardedSource({ url: options.from, clientOptions, collection: options.collection, filter, shards: options.shards.count, count })
    }
    const collection = client.db().collection(options.collection)
    return mongoSource({ collection: collection, filter, count })
  }
  if (scheme === undefined) {
    // A file of rows.
    if (options.query || options.collection || options.copy) throw new UsageError('a file source takes no --query, --collection or --copy')
    const { format } = formatOfName(options.from)
    if (format === 'csv') return csvSource({ path: options.from })
    if (format === 'jsonl') return jsonlSource({ path: options.from })
    throw new UsageError(
      `--from: expected a postgres:// or mongodb:// URL, or a .csv / .jsonl / .ndjson file (optionally .gz), got ${JSON.stringify(options.from)}`,
    )
  }
  throw new UsageError(`--from: expected a postgres:// or mongodb:// URL, or a .csv / .jsonl file, got ${JSON.stringify(redact(options.from))}`)
}

/** Writes to standard output with its backpressure, and finishes without closing it. */
function stdoutSink(stdout: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (stdout.write(chunk)) return callback()
      const onError = (error: Error) => {
        stdout.off('drain', onDrain)
        callback(error)
      }
      const onDrain = () => {
        stdout.off('error', onError)
        callback()
      }
      stdout.once('drain', onDrain)
      stdout.once('error', onError)
    },
  })
}

async function openSink(options: Options, stdout: NodeJS.WritableStream) {
  if (options.to === '-') return { sink: stdoutSink(stdout) }
  const s3url = /^s3:\/\/([^/]+)\/(.+)$/.exec(options.to)
  if (!s3url) {
    // Checked before the query runs: a directory would only fail at the rename, after every row.
    if ((await stat(options.to).catch(() => undefined))?.isDirectory())
      throw new UsageError(`--to: ${JSON.stringify(options.to)} is a directory; give a file name`)
    return { sink: fileSink({ path: options.to }) }
  }
  const { S3Client } = loadOptional<typeof import('@aws-sdk/client-s3')>('@aws-sdk/client-s3', '@aws-sdk/client-s3')
  const client = new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(options.endpoint
      ? { endpoint: options.endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }
      : {}),
  })
  const bucket = s3url[1]!
  const key = s3url[2]!
  return { sink: s3Sink({ client, bucket, key }), client, bucket, key }
}

export async function main(
  argv: string[],
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; stdin: NodeJS.ReadableStream } = {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
  },
): Promise<number> {
  const cleanups: Array<() => Promise<unknown>> = []
  const controller = new AbortController()
  // Ctrl-C, a container stop (SIGTERM) and a closed terminal (SIGHUP) all stop the export the same
  // way: temp file removed, multipart upload aborted; the exit code is 128 + the signal's number.
  let stoppedBy: NodeJS.Signals | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy) process.exit(128 + constants.signals[signal]) // a second signal does not wait for the cleanup
    stoppedBy = signal
    controller.abort(new Error(`interrupted by ${signal}`))
  }
  for (const signal of SIGNALS) process.on(signal, onSignal)
  try {
    const options = await parse(argv, io.stdin)
    const { sink, client, bucket, key } = await openSink(options, io.stdout)
    const incremental = options.incremental
    const source = incremental ? undefined : await openSource(options, cleanups)
    // With the data on standard output, messages go to standard error.
    const out = options.to === '-' ? io.stderr : io.stdout
    const tty = Boolean((io.stderr as { isTTY?: boolean }).isTTY)
    const run = {
      format: options.copy ? undefined : makeFormat(options),
      gzip: options.gzip,
      sink,
      split: options.split,
      signal: controller.signal,
      progressIntervalMs: tty ? 250 : 5000,
      onProgress: options.quiet ? undefined : (p: Progress) => void io.stderr.write(tty ? `\r${progressLine(p)}\x1b[K` : `${progressLine(p)}\n`),
    }
    const result: ExportResult & { url?: string; urls?: string[] } = incremental
      ? await incrementalExport<Location, IncrementalWatermark>({
          ...run,
          name: incremental.feed,
          store: openStore(options, cleanups),
          source: (after) =>
            postgresIncrementalSource({ connectionString: options.from, table: incremental.table, orderBy: incremental.orderBy, key: incremental.key, after }),
        })
      : await exportStream<Location>({ ...run, source: source! })
    if (tty && !options.quiet) io.stderr.write('\n')
    const where = (location: Location | undefined) =>
      location === undefined ? 'standard output' : 'path' in location ? location.path : `s3://${location.bucket}/${location.key}`
    if (options.presign && client) {
      const expiresIn = parseDuration(options.presign)
      const presign = (objectKey: string) => presignDownload(client, { bucket: bucket, key: objectKey, expiresIn })
      // A split export: a link to each part (in order); the manifest's is `url`.
      if (result.parts) result.urls = await Promise.all(result.parts.map((part) => presign((part.location as { key: string }).key)))
      result.url = await presign(result.location && 'key' in result.location ? result.location.key : key)
    }
    if (options.json) out.write(`${JSON.stringify(result, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value))}\n`)
    else if (!options.quiet) {
      const seconds = `${(result.durationMs / 1000).toFixed(1)} s`
      if (result.parts) {
        const [first, last] = [result.parts[0]!, result.parts.at(-1)!]
        const range = result.parts.length > 1 ? `${where(first.location)} .. ${last.name}` : where(first.location)
        out.write(`exported ${result.rows.toLocaleString('en')} rows (${mb(result.bytes)}) in ${result.parts.length} parts to ${range} in ${seconds}\n`)
        out.write(`manifest: ${where(result.location)}\n`)
        for (const url of result.urls ?? []) out.write(`${url}\n`)
      } else out.write(`exported ${result.rows.toLocaleString('en')} rows (${mb(result.bytes)}) to ${where(result.location)} in ${seconds}\n`)
      if (result.url) out.write(`${result.url}\n`)
    }
    return 0
  } catch (error) {
    if (error instanceof HelpRequested) {
      io.stdout.write(`${USAGE}\n`)
      return 0
    }
    if (error instanceof VersionRequested) {
      io.stdout.write(`${version()}\n`)
      return 0
    }
    if (error instanceof UsageError) {
      io.stderr.write(`stream-export: ${error.message}\nRun stream-export --help for the options.\n`)
      return 2
    }
    // One line: the code and the message (a URL's password redacted), never a stack.
    const code = error instanceof ExportError ? error.code : undefined
    const message = redact((error as Error).message ?? String(error)).split('\n')[0]
    io.stderr.write(`stream-export: ${code ?? 'error'}: ${message}\n`)
    if (code === 'ERR_ABORTED' && stoppedBy) return 128 + constants.signals[stoppedBy]
    return (code && EXIT[code]) ?? 1
  } finally {
    for (const signal of SIGNALS) process.off(signal, onSignal)
    await Promise.all(cleanups.map((c) => c().catch(() => {})))
  }
}

/** The package's version, read from its package.json (dist/cli.js sits one folder below it). */
function version(): string {
  return (createRequire(import.meta.url)('../package.json') as { version: string }).version
}

// Run when executed (not when imported by a test).
if (process.argv[1] && /(^|[/\\])(cli\.(js|cjs|mjs)|stream-export)$/.test(process.argv[1])) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
