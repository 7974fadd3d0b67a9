#!/usr/bin/env node
// stream-export: the library's main job from a shell. Credentials come from the environment
// (the URL, AWS_* variables and the AWS default chain) and are never printed.
import { constants } from 'node:os'
import { createRequire } from 'node:module'
import {
  estimateExport,
  ExportError,
  exportStream,
  exportWorkbook,
  incrementalExport,
  postgresSource,
  postgresIncrementalSource,
  presignDownload,
  azureDownloadUrl,
  type AzureLocation,
  type ExportErrorCode,
  type ExportResult,
  type IncrementalWatermark,
  type Location,
  type Progress,
} from '../index.js'
import { HelpRequested, parse, parseDuration, USAGE, UsageError, VersionRequested, type Options } from './args.js'
import { makeFormat, openSink, openSource, openStore } from './open.js'
import { verifyCommand } from './verify.js'
import { estimateLines, mb, progressLine, redact } from './output.js'

const EXIT: Partial<Record<ExportErrorCode, number>> = {
  ERR_INVALID_OPTION: 2,
  ERR_SOURCE: 3,
  ERR_TRANSFORM: 4,
  ERR_FORMAT: 4,
  ERR_SINK: 5,
  ERR_ABORTED: 130,
  ERR_STATE: 6,
  ERR_PRECONDITION: 7,
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

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
  let readerGone = false
  try {
    if (argv[0] === 'verify') return await verifyCommand(argv.slice(1), io.stdout)
    const options = await parse(argv, io.stdin)
    if (options.dryRun) return await dryRun(options, io.stdout, cleanups, controller.signal)
    // `--to - | head`: the reader has what it wanted; the export stops quietly (exit 0), as psql's does.
    const { sink, client, bucket, key, azure } = await openSink(options, io.stdout, () => {
      readerGone = true
      controller.abort(new Error('standard output was closed by its reader'))
    })
    const { incremental, sheets } = options
    const source = incremental || sheets ? undefined : await openSource(options, cleanups)
    // With the data on standard output, messages go to standard error.
    const out = options.to === '-' ? io.stderr : io.stdout
    const tty = Boolean((io.stderr as { isTTY?: boolean }).isTTY)
    const common = {
      sink,
      signal: controller.signal,
      ...options.rates,
      progressIntervalMs: tty ? 250 : 5000,
      onProgress: options.quiet ? undefined : (p: Progress) => void io.stderr.write(tty ? `\r${progressLine(p)}\x1b[K` : `${progressLine(p)}\n`),
    }
    const run = {
      ...common,
      format: options.copy || sheets ? undefined : makeFormat(options),
      compression: options.compression,
      split: options.split,
      partitionBy: options.partitionBy,
    }
    const result: ExportResult & { url?: string; urls?: string[]; sheets?: Array<{ name: string; rows: number }> } = sheets
      ? await exportWorkbook<Location>({
          ...common,
          xlsx: { header: options.header },
          // Each query runs when its sheet's turn comes: one connection at a time.
          sheets: sheets.map(({ name, query }) => ({
            name,
            source: () => postgresSource({ connectionString: options.from, text: query, ...options.guards }),
          })),
        })
      : incremental
        ? await incrementalExport<Location, IncrementalWatermark>({
            ...run,
            name: incremental.feed,
            store: openStore(options, cleanups),
            source: (after) =>
              postgresIncrementalSource({
                connectionString: options.from,
                table: incremental.table,
                orderBy: incremental.orderBy,
                key: incremental.key,
                after,
                ...options.guards,
              }),
          })
        : await exportStream<Location>({ ...run, source: source! })
    if (tty && !options.quiet) io.stderr.write('\n')
    const scheme = options.to.startsWith('gs://') ? 'gs' : 's3'
    const where = (location: Location | AzureLocation | undefined) =>
      location === undefined
        ? 'standard output'
        : 'path' in location
          ? location.path
          : 'blob' in location
            ? `az://${location.container}/${location.blob}`
            : `${scheme}://${location.bucket}/${location.key}`
    if (options.presign) {
      const expiresIn = parseDuration(options.presign)
      const presign = (name: string) =>
        azure ? azureDownloadUrl(azure.containerClient, { blobName: name, expiresIn }) : presignDownload(client!, { bucket: bucket!, key: name, expiresIn })
      const nameOf = (location: unknown) => (location as { key?: string; blob?: string }).key ?? (location as { blob: string }).blob
      // A split export: a link to each part (in order); the manifest's is `url`.
      if (result.parts) result.urls = await Promise.all(result.parts.map((part) => presign(nameOf(part.location))))
      result.url = await presign(result.location ? nameOf(result.location) : (key ?? azure!.blobName))
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
      for (const sheet of result.sheets ?? []) out.write(`  ${sheet.name}: ${sheet.rows.toLocaleString('en')} rows\n`)
      const { checksum } = result
      if (checksum) out.write(`${checksum.algorithm.toLowerCase()} ${checksum.value}${checksum.verifiedByStore ? ' (verified by the store)' : ''}\n`)
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
    if (readerGone) return 0
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

/** --dry-run: the estimate of the export, and nothing else (no sink is opened). */
async function dryRun(options: Options, stdout: NodeJS.WritableStream, cleanups: Array<() => Promise<unknown>>, signal: AbortSignal): Promise<number> {
  if (options.incremental) throw new UsageError('--dry-run estimates a query or a collection: not an incremental export (--since-state)')
  if (options.partitionBy) throw new UsageError("--dry-run: a partitioned export's size depends on its values; estimate it without --partition-by")
  // A --copy export writes the CSV the cursor's rows would give: its query is sampled through the cursor.
  const source = await openSource({ ...options, copy: false }, cleanups)
  const estimate = await estimateExport({ source, format: makeFormat(options), compression: options.compression, split: options.split, signal })
  if (options.json) stdout.write(`${JSON.stringify(estimate)}\n`)
  else stdout.write(estimateLines(estimate, options.count, `${options.format}${options.compression ? ` (${options.compression})` : ''}`))
  return 0
}
