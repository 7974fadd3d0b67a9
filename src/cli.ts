#!/usr/bin/env node
// stream-export: the library's main job from a shell. Credentials come from the environment
// (the URL, AWS_* variables and the AWS default chain) and are never printed.
import { constants } from 'node:os'
import { parseArgs } from 'node:util'
import { ExportError, type ExportErrorCode } from './errors.js'
import { exportStream, type ExportResult } from './export-stream.js'
import { csv } from './formats/csv.js'
import { jsonArray } from './formats/json-array.js'
import { jsonl } from './formats/jsonl.js'
import { parquet } from './formats/parquet.js'
import { loadOptional } from './optional.js'
import { fileSink } from './sinks/file.js'
import { presignDownload } from './sinks/presign.js'
import { s3Sink, type S3ClientLike } from './sinks/s3.js'
import { mongoSource } from './sources/mongo.js'
import { postgresSource } from './sources/postgres.js'
import type { Progress } from './stages/progress.js'

const USAGE = `Usage: stream-export --from <postgres-url|mongodb-url> (--query <sql> | --collection <name> [--filter <json>])
                     --format csv|jsonl|json|parquet [--gzip] --to <file path|s3://bucket/key>
                     [--presign 24h] [--endpoint <url>] [--quiet] [--json]

  --from        postgres://... or mongodb://... (a password in it is never printed)
  --query       SQL for Postgres          --collection, --filter   for MongoDB (filter: extended JSON)
  --format      csv (default), jsonl, json (one array), parquet
  --gzip        gzip the output (on every core); not with parquet
  --to          a file path, or s3://bucket/key (credentials: AWS_* variables / the AWS default chain)
  --endpoint    S3-compatible store URL (MinIO, R2, Ceph): path-style, checksums only when required
  --presign     after an S3 export, print a presigned download URL valid this long (e.g. 3600s, 30m, 24h, 7d)
  --quiet       no progress and no summary      --json   print the result as JSON on stdout

Exit codes: 0 done, 2 bad arguments, 3 source failed, 4 format failed, 5 destination failed,
130/143/129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (nothing is left behind), 1 anything else.`

const EXIT: Partial<Record<ExportErrorCode, number>> = {
  ERR_INVALID_OPTION: 2,
  ERR_SOURCE: 3,
  ERR_TRANSFORM: 4,
  ERR_FORMAT: 4,
  ERR_SINK: 5,
  ERR_ABORTED: 130,
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

const formatDuration = (ms: number) => {
  const s = Math.round(ms / 1000)
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`
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

interface Options {
  from: string
  query?: string
  collection?: string
  filter?: string
  format: string
  gzip: boolean
  to: string
  presign?: string
  endpoint?: string
  quiet: boolean
  json: boolean
}

function parse(argv: string[]): Options {
  let parsed
  try {
    parsed = parseArgs({
    args: argv,
    options: {
      from: { type: 'string' },
      query: { type: 'string' },
      collection: { type: 'string' },
      filter: { type: 'string' },
      format: { type: 'string', default: 'csv' },
      gzip: { type: 'boolean', default: false },
      to: { type: 'string' },
      presign: { type: 'string' },
      endpoint: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  const { values } = parsed
  if (values.help) throw new UsageError('')
  if (!values.from) throw new UsageError('--from is required')
  if (!values.to) throw new UsageError('--to is required')
  if (!['csv', 'jsonl', 'json', 'parquet'].includes(values.format!)) throw new UsageError(`--format: expected csv, jsonl, json or parquet, got ${JSON.stringify(values.format)}`)
  if (values.presign !== undefined && !values.to.startsWith('s3://')) throw new UsageError('--presign needs an s3:// destination')
  return values as Options
}

async function openSource(options: Options, cleanups: Array<() => Promise<unknown>>) {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(options.from)?.[1]?.toLowerCase()
  if (scheme === 'postgres' || scheme === 'postgresql') {
    if (!options.query || options.collection) throw new UsageError('a Postgres source takes --query (and no --collection)')
    return postgresSource({ connectionString: options.from, text: options.query, count: 'estimate' })
  }
  if (scheme === 'mongodb' || scheme === 'mongodb+srv') {
    if (!options.collection || options.query) throw new UsageError('a MongoDB source takes --collection (and no --query)')
    const { MongoClient, BSON } = loadOptional<typeof import('mongodb')>('mongodb', 'mongodb')
    let filter = {}
    try {
      filter = options.filter ? BSON.EJSON.parse(options.filter) : {}
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
    const collection = client.db().collection(options.collection)
    return mongoSource({ collection: collection as never, filter, count: 'estimate' })
  }
  throw new UsageError(`--from: expected a postgres:// or mongodb:// URL, got ${JSON.stringify(redact(options.from))}`)
}

function openSink(options: Options) {
  const s3url = /^s3:\/\/([^/]+)\/(.+)$/.exec(options.to)
  if (!s3url) return { sink: fileSink({ path: options.to }) }
  const { S3Client } = loadOptional<typeof import('@aws-sdk/client-s3')>('@aws-sdk/client-s3', '@aws-sdk/client-s3')
  const client = new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(options.endpoint
      ? { endpoint: options.endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }
      : {}),
  })
  const [, bucket, key] = s3url
  return { sink: s3Sink({ client, bucket, key }), client, bucket, key }
}

export async function main(argv: string[], io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
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
    const options = parse(argv)
    const format = { csv: () => csv(), jsonl: () => jsonl(), json: () => jsonArray(), parquet: () => parquet() }[options.format as 'csv']()
    const source = await openSource(options, cleanups)
    const { sink, client, bucket, key } = openSink(options)
    const tty = Boolean((io.stderr as { isTTY?: boolean }).isTTY)
    const result: ExportResult & { url?: string } = await exportStream({
      source,
      format,
      gzip: options.gzip,
      sink,
      signal: controller.signal,
      progressIntervalMs: tty ? 250 : 5000,
      onProgress: options.quiet ? undefined : (p) => void io.stderr.write(tty ? `\r${progressLine(p)}\x1b[K` : `${progressLine(p)}\n`),
    })
    if (tty && !options.quiet) io.stderr.write('\n')
    if (options.presign && client) {
      result.url = await presignDownload(client as S3ClientLike, { bucket: bucket!, key: key!, expiresIn: parseDuration(options.presign) })
    }
    if (options.json) io.stdout.write(`${JSON.stringify(result)}\n`)
    else if (!options.quiet) {
      const where = 'path' in (result.location ?? {}) ? options.to : `s3://${bucket}/${key}`
      io.stdout.write(`exported ${result.rows.toLocaleString('en')} rows (${mb(result.bytes)}) to ${where} in ${(result.durationMs / 1000).toFixed(1)} s\n`)
      if (result.url) io.stdout.write(`${result.url}\n`)
    }
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(error.message ? `stream-export: ${error.message}\n\n${USAGE}\n` : `${USAGE}\n`)
      return error.message ? 2 : 0
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

// Run when executed (not when imported by a test).
if (process.argv[1] && /(^|[/\\])(cli\.(js|cjs|mjs)|stream-export)$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
