// The command line of stream-export: its options, their checks and the usage text. Pure: nothing
// here opens a connection or a file (but --query @file and --query - read the SQL).
import { availableParallelism } from 'node:os'
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { CSV_COLUMN_TYPES, type ChecksumAlgorithm, type CsvColumnType } from '../index.js'
import { PRODUCTION_FLAGS, PRODUCTION_USAGE, productionOptions, type ProductionOptions } from './production.js'
import { schemeOf } from '../core/location.js'
import { parseSize, UsageError } from './values.js'

export { parseDuration, parseSize, UsageError } from './values.js'

/** An Azure blob's URL with a SAS: the account's host, the container, the blob name, the query. */
export const AZURE_BLOB_URL = /^(https:\/\/[^/]+\.blob\.core\.windows\.net)\/([^/?]+)\/([^?]+)(\?.*)?$/i

export const USAGE = `Usage: stream-export [--from <url|file>] (--query <sql|@file|-> | --collection <name> [--filter <json>])
                     --to <file|s3://bucket/key|gs://bucket/key|az://container/blob|-> [options]
       stream-export verify <name.manifest.json | s3://bucket/key | file>   (see verify --help)

Source
  --from        postgres://..., mysql:// or mariadb://..., mongodb://..., or a CSV / JSONL file (.csv, .jsonl,
                .ndjson; also .gz, .zst).
                Default: $DATABASE_URL with --query, $MONGODB_URL with --collection (keeps the
                password out of \`ps\`). A password in a URL is never printed.
  --query       SQL for Postgres or MySQL; @report.sql reads it from a file, - from standard input.
                Several, each NAME=SQL (NAME=@file): one XLSX workbook, a sheet each, in order
                (--to report.xlsx --query 'Summary=select ...' --query 'Detail=select ...')
  --query-file  the same as --query @file
  --copy        Postgres COPY fast path (CSV only: the server writes the CSV)
  --collection  a MongoDB collection      --filter  its filter (extended JSON)
  --count       exact | estimate | none: the total behind the progress bar (default: estimate)
  --infer       a CSV file's column types from its first 1000 rows (a later cell of another form
                stays text)     --types id:bigint,paid:boolean,...  declared types (docs/sources.md)
  --empty-null  a CSV file's unquoted empty cells are NULL (a quoted "" stays an empty string)

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
  --to          a file path (missing folders are created), s3://bucket/key, gs://bucket/key (GCS:
                $GCS_HMAC_ACCESS_KEY_ID, $GCS_HMAC_SECRET), az://container/blob (Azure:
                $AZURE_STORAGE_CONNECTION_STRING) or an https://<account>.blob.core.windows.net/
                container/blob?<SAS> URL, or - for standard output
  --format      csv | jsonl | json | parquet | xlsx. Default: from the --to extension, else csv
  --gzip        gzip the output (on every core). Default: on when --to ends in .gz
  --zstd        Zstandard the output (level 3). Default: on when --to ends in .zst
  --endpoint    S3-compatible store URL (MinIO, R2, Ceph; for gs://, GCS's): path-style, the SDK's own
                checksums only when required (--checksum none for a store that refuses ours)
  --presign     after an S3, GCS or Azure export, print a download URL valid this long (3600s, 30m, 24h, 7d)
  --no-clobber  never replace an existing file or object (refused before the first byte; exit 7)
  --checksum    crc64nvme (default; none for gs://) | crc32c | crc32 | none: the output's full
                checksum, printed, and verified by S3 at the commit (docs/integrity.md)
  --split-rows <n>     write parts of n rows each (statements-<run>-00001.csv.gz, ...) and a manifest
  --split-bytes <size> write parts of about this size as stored (100MB, 1GiB); with --split-rows too
  --partition-by <a,b> one file or object per value of these columns, named by --to's {placeholders}
                (--to 's3://b/exports/{customer}.csv.gz'), one manifest for all (docs/partitions.md);
                --hive: folders customer=acme/ under --to's folder instead of placeholders

CSV (--columns and --no-header also for XLSX)
  --delimiter <c>   --no-header   --null <text>   --excel (BOM, CRLF, formula escaping)   --bom
  --columns a,b,c   (order and subset of the columns)

${PRODUCTION_USAGE}

Output
  --quiet       no progress and no summary      --json   print the result as JSON
  -h, --help    this text                       --version

Exit codes: 0 done, 2 bad arguments, 3 source failed, 4 format failed, 5 destination failed,
6 watermark not loaded or stored (after a commit: the next run repeats these rows), 7 the
destination exists (--no-clobber) or appeared meanwhile,
130/143/129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (nothing is left behind), 1 anything else.`

/** The checksums by their command-line names. */
export const CHECKSUM_NAMES: Readonly<Record<string, ChecksumAlgorithm>> = { crc64nvme: 'CRC64NVME', crc32c: 'CRC32C', crc32: 'CRC32' }

const FORMATS = ['csv', 'jsonl', 'json', 'parquet', 'xlsx'] as const
export type FormatName = (typeof FORMATS)[number]
/** File extensions and the format they mean. */
const EXTENSIONS: Record<string, FormatName> = { csv: 'csv', jsonl: 'jsonl', ndjson: 'jsonl', json: 'json', parquet: 'parquet', xlsx: 'xlsx' }

type CompressionName = 'gzip' | 'zstd'
const COMPRESSED: Record<string, CompressionName> = { gz: 'gzip', zst: 'zstd' }
const SUFFIX: Record<CompressionName, string> = { gzip: '.gz', zstd: '.zst' }

/** The format and compression a file name says: `x.csv.gz` -> csv, gzip; `x.jsonl.zst` -> jsonl, zstd. */
export function formatOfName(name: string): { format?: FormatName; compression?: CompressionName } {
  // The compression first: `out.zst` is a zstd file of no named format, not a format `zst`.
  const compressed = /\.(gz|zst)$/i.exec(name)
  const format = /\.([a-z]+)$/i.exec(compressed ? name.slice(0, compressed.index) : name)?.[1]
  return {
    format: format === undefined ? undefined : EXTENSIONS[format.toLowerCase()],
    compression: compressed ? COMPRESSED[compressed[1]!.toLowerCase()] : undefined,
  }
}

export interface Options {
  from: string
  query?: string
  /** Several `--query NAME=SQL`: one workbook, a sheet each. */
  sheets?: Array<{ name: string; query: string }>
  collection?: string
  filter?: string
  copy: boolean
  count: 'exact' | 'estimate' | 'none'
  format: FormatName
  /** The output's compression (--gzip, --zstd, or the name's .gz or .zst), or none. */
  compression?: CompressionName
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
  partitionBy?: { by: string[]; hive: boolean }
  incremental?: { state: string; table: string; feed: string; orderBy?: string[]; key: string[] }
  shards?: { count: number; table?: string; key: string[] }
  /** A CSV file's column types: inferred, or declared. */
  types?: 'infer' | Record<string, CsvColumnType>
  emptyNull: boolean
  noClobber: boolean
  checksum: ChecksumAlgorithm | false
  /** --dry-run: estimate, write nothing. */
  dryRun: boolean
  /** The Postgres session's guards (a Postgres source only). */
  guards: ProductionOptions['guards']
  /** --max-rows-per-second, --max-bytes-per-second. */
  rates: ProductionOptions['rates']
}

export class HelpRequested extends Error {}
export class VersionRequested extends Error {}

/** The options of a command line, checked; the SQL read from its file or standard input. */
export async function parse(argv: string[], stdin: NodeJS.ReadableStream): Promise<Options> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        from: { type: 'string' },
        query: { type: 'string', multiple: true },
        'query-file': { type: 'string' },
        copy: { type: 'boolean', default: false },
        collection: { type: 'string' },
        filter: { type: 'string' },
        count: { type: 'string', default: 'estimate' },
        infer: { type: 'boolean', default: false },
        types: { type: 'string' },
        'empty-null': { type: 'boolean', default: false },
        'since-state': { type: 'string' },
        table: { type: 'string' },
        feed: { type: 'string' },
        'order-by': { type: 'string' },
        key: { type: 'string' },
        shards: { type: 'string' },
        format: { type: 'string' },
        gzip: { type: 'boolean' },
        zstd: { type: 'boolean' },
        to: { type: 'string' },
        presign: { type: 'string' },
        'no-clobber': { type: 'boolean', default: false },
        checksum: { type: 'string' },
        'split-rows': { type: 'string' },
        'split-bytes': { type: 'string' },
        'partition-by': { type: 'string' },
        hive: { type: 'boolean', default: false },
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
        ...PRODUCTION_FLAGS,
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

  // The SQL: inline, @file, --query-file, or - for standard input; several as NAME=SQL, a sheet each.
  if (values['query-file'] !== undefined) {
    if (values.query !== undefined) throw new UsageError('give --query or --query-file, not both')
    values.query = [`@${values['query-file']}`]
  }
  let query: string | undefined
  let sheets: Options['sheets']
  if (values.query?.length === 1) query = await sql(values.query[0]!, stdin)
  else if (values.query) sheets = await namedQueries(values.query, stdin)

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
  if (sheets) {
    const refused = (
      ['copy', 'since-state', 'shards', 'split-rows', 'split-bytes', 'partition-by', 'dry-run', 'columns', 'collection', 'filter'] as const
    ).find((name) => values[name] !== undefined && values[name] !== false)
    if (refused) throw new UsageError(`--${refused} is not available with several --query (one workbook, a sheet each)`)
  }
  const from =
    values.from ??
    (query !== undefined || sheets || incremental || shards?.table
      ? process.env.DATABASE_URL
      : values.collection !== undefined
        ? process.env.MONGODB_URL
        : undefined)
  if (!from) throw new UsageError('--from is required (or DATABASE_URL with --query, MONGODB_URL with --collection)')
  if (incremental && !/^postgres(ql)?:\/\//i.test(from)) throw new UsageError('--since-state needs a Postgres --from (postgres://...)')
  if (shards?.table && !/^postgres(ql)?:\/\//i.test(from)) throw new UsageError('--shards --table needs a Postgres --from (postgres://...)')

  const types = csvTypes(values.infer, values.types)
  if ((types !== undefined || values['empty-null']) && !/\.csv(\.gz|\.zst)?$/i.test(from))
    throw new UsageError('--infer, --types and --empty-null read a CSV file: give --from a .csv file')

  // Format and compression: from the options, else from the destination's name; never contradicting it.
  // (A URL is never taken for a file name: a SAS in it would be printed, and the file written where nobody looks.)
  const scheme = schemeOf(values.to)
  const masked = JSON.stringify(values.to.replace(/\?.*$/, '?...'))
  if (scheme === 'https' && !AZURE_BLOB_URL.test(values.to))
    throw new UsageError(`--to: an https URL must be an Azure blob's, https://<account>.blob.core.windows.net/container/blob?<SAS>; got ${masked}`)
  if (scheme !== undefined && !['https', 's3', 'gs', 'az'].includes(scheme))
    throw new UsageError(`--to: expected a file, s3://, gs://, az:// or an Azure blob's https URL; got ${masked}`)
  // (The blob name of a SAS URL, without its query; a key without its bucket.)
  const named = values.to === '-' ? {} : formatOfName((AZURE_BLOB_URL.exec(values.to)?.[3] ?? values.to).replace(/^(s3|gs|az):\/\/[^/]*\//, ''))
  if (values.format !== undefined && !FORMATS.includes(values.format as FormatName)) {
    throw new UsageError(`--format: expected one of ${FORMATS.join(', ')}, got ${JSON.stringify(values.format)}`)
  }
  const format = (values.format as FormatName | undefined) ?? named.format ?? (sheets ? 'xlsx' : 'csv')
  if (sheets && format !== 'xlsx') throw new UsageError(`several --query write one workbook, a sheet each: the format is ${format}; give --to a .xlsx name`)
  if (sheets && !/^postgres(ql)?:\/\//i.test(from)) throw new UsageError('several --query read Postgres: give a postgres:// --from (or DATABASE_URL)')
  if (named.format !== undefined && named.format !== format) {
    throw new UsageError(`--format ${format} contradicts --to ${JSON.stringify(values.to)} (a .${extensionOf(named.format)} name): change one of them`)
  }
  const compression = compressionOf(values, values.to, named, format)

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
  if (values.presign !== undefined && !/^(s3|gs|az):\/\//.test(values.to))
    throw new UsageError(
      values.to.startsWith('https://')
        ? '--presign signs with the account key: give az://container/blob and $AZURE_STORAGE_CONNECTION_STRING (a SAS URL cannot sign links)'
        : '--presign needs an s3://, gs:// or az:// destination',
    )
  if (values.endpoint !== undefined && (values.to.startsWith('az://') || values.to.startsWith('https://')))
    throw new UsageError('--endpoint is for S3-compatible stores and gs://; an Azure account comes from $AZURE_STORAGE_CONNECTION_STRING (its BlobEndpoint)')
  let split: Options['split']
  if (values['split-rows'] !== undefined || values['split-bytes'] !== undefined) {
    if (values.to === '-') throw new UsageError('--split-rows and --split-bytes write files or objects: give --to a file name or s3:// key')
    if (values.copy) throw new UsageError('--copy streams the bytes of one COPY: it cannot be split between rows; drop --copy')
    const rows = values['split-rows']
    if (rows !== undefined && !/^[1-9]\d*$/.test(rows)) throw new UsageError(`--split-rows: expected a positive whole number, got ${JSON.stringify(rows)}`)
    split = { rows: rows === undefined ? undefined : Number(rows), bytes: values['split-bytes'] === undefined ? undefined : parseSize(values['split-bytes']) }
  }
  let partitionBy: Options['partitionBy']
  if (values['partition-by'] !== undefined) {
    if (values.to === '-') throw new UsageError('--partition-by writes a file or object per partition: give --to a name with {placeholders}')
    if (values.copy) throw new UsageError('--copy streams the bytes of one COPY: it cannot be partitioned between rows; drop --copy')
    const by = list(values['partition-by'])
    if (by.some((column) => column === '')) throw new UsageError(`--partition-by: expected column names, got ${JSON.stringify(values['partition-by'])}`)
    partitionBy = { by, hive: values.hive }
  } else if (values.hive) throw new UsageError('--hive names the folders of --partition-by: give --partition-by')
  if (values['no-clobber'] && (values.to === '-' || split || partitionBy))
    throw new UsageError('--no-clobber guards one file or object: drop it for standard output, --split-* and --partition-by')
  const gcs = values.to.startsWith('gs://')
  const checksumName = (values.checksum ?? (gcs ? 'none' : 'crc64nvme')).toLowerCase()
  const checksum = checksumName === 'none' ? false : CHECKSUM_NAMES[checksumName]
  if (checksum === undefined) throw new UsageError(`--checksum: expected crc64nvme, crc32c, crc32 or none, got ${JSON.stringify(values.checksum)}`)
  if (gcs && checksum) throw new UsageError('--checksum: gs:// takes none (GCS refuses the x-amz-checksum headers and checks its own CRC32C)')
  if (gcs && values['no-clobber']) throw new UsageError('--no-clobber: GCS ignores conditional writes through its XML API; drop it for gs://')
  for (const [scheme, what] of [
    ['s3', 's3://bucket/key'],
    ['gs', 'gs://bucket/key'],
    ['az', 'az://container/blob'],
  ] as const)
    if (values.to.startsWith(`${scheme}://`) && !new RegExp(`^${scheme}://[^/]+/.+`).test(values.to))
      throw new UsageError(`--to: expected ${what}, got ${JSON.stringify(values.to)} (no ${scheme === 'az' ? 'blob name' : 'key'})`)

  return {
    from,
    query,
    sheets,
    collection: values.collection,
    filter: values.filter,
    copy: values.copy,
    count: values.count as Options['count'],
    format,
    compression,
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
    partitionBy,
    incremental,
    shards,
    types,
    emptyNull: values['empty-null'],
    noClobber: values['no-clobber'],
    checksum,
    ...productionOptions(values, /^postgres(ql)?:\/\//i.test(from)),
  }
}

/** --gzip, --zstd or the destination's .gz / .zst; a flag never contradicts the name, nor says what a format does itself. */
function compressionOf(
  flags: { gzip?: boolean; zstd?: boolean },
  to: string,
  named: { format?: FormatName; compression?: CompressionName },
  format: FormatName,
) {
  if (flags.gzip && flags.zstd) throw new UsageError('give --gzip or --zstd, not both')
  const flag = flags.gzip ? 'gzip' : flags.zstd ? 'zstd' : undefined
  const said = flag ?? named.compression
  // A format that compresses itself first: `--to x.parquet --gzip` must not be told to add .gz.
  if (said && format === 'parquet') throw new UsageError(`--${said}: Parquet compresses itself; drop --${said} (or the ${SUFFIX[said]})`)
  if (said && format === 'xlsx') throw new UsageError(`--${said}: an XLSX workbook is a ZIP already; drop --${said} (or the ${SUFFIX[said]})`)
  if (flag && to !== '-' && (named.format !== undefined || named.compression !== undefined) && flag !== named.compression) {
    const fix = named.compression ? `the name ends in ${SUFFIX[named.compression]}` : `add ${SUFFIX[flag]} to the name`
    throw new UsageError(`--${flag} contradicts --to ${JSON.stringify(to)}: ${fix}`)
  }
  return said
}

/** `--infer`, or `--types id:bigint,paid:boolean`: the types of a CSV file's columns. */
function csvTypes(infer: boolean, declared: string | undefined): Options['types'] {
  if (infer && declared !== undefined) throw new UsageError('give --infer or --types, not both')
  if (infer) return 'infer'
  if (declared === undefined) return undefined
  const types: Record<string, CsvColumnType> = {}
  for (const pair of declared.split(',')) {
    const [name = '', type = ''] = pair.split(':').map((part) => part.trim())
    if (!name || !CSV_COLUMN_TYPES.includes(type as CsvColumnType))
      throw new UsageError(`--types: expected column:type pairs, a type one of ${CSV_COLUMN_TYPES.join(', ')}; got ${JSON.stringify(pair)}`)
    types[name] = type as CsvColumnType
  }
  return types
}

const extensionOf = (format: FormatName) => (format === 'jsonl' ? 'jsonl' : format)

/** One --query: inline SQL, @file, or - for standard input; never empty. */
async function sql(given: string, stdin: NodeJS.ReadableStream, option = '--query'): Promise<string> {
  let query = given
  if (query === '-') query = await text(stdin)
  else if (query.startsWith('@')) {
    query = await readFile(query.slice(1), 'utf8').catch((error: Error) => {
      throw new UsageError(`${option}: cannot read ${JSON.stringify(given.slice(1))}: ${error.message}`)
    })
  }
  if (query.trim() === '') throw new UsageError(`${option}: the query is empty`)
  return query
}

/** Several --query, each NAME=SQL (the SQL inline, @file or -): a workbook's sheets. */
async function namedQueries(given: string[], stdin: NodeJS.ReadableStream): Promise<NonNullable<Options['sheets']>> {
  if (given.filter((query) => query.slice(query.indexOf('=') + 1) === '-').length > 1) throw new UsageError('--query: standard input (-) can be read once')
  const sheets = []
  for (const query of given) {
    const split = query.indexOf('=')
    if (split <= 0) throw new UsageError(`several --query name a sheet each: expected NAME=SQL, got ${JSON.stringify(query.slice(0, 60))}`)
    const name = query.slice(0, split)
    sheets.push({ name, query: await sql(query.slice(split + 1), stdin, `--query ${name}`) })
  }
  return sheets
}

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let result = ''
  for await (const chunk of stream) result += chunk.toString()
  return result
}
