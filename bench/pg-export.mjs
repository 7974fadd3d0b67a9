// One Postgres export in this process, for bench/postgres.mjs.
//   node bench/pg-export.mjs <copy|text|rows> <sql> <out path> [batchSize]
// copy: postgresCopySource; text: postgresSource + csv() (PostgreSQL writes the CSV where it can);
// rows: the same with a transform (every row through the row path). FORMAT=jsonl: jsonl() instead;
// COMPRESSION=zstd: zstd instead of gzip.
import pg from 'pg'
import { csv, exportStream, fileSink, jsonl, postgresCopySource, postgresSource } from 'stream-export'

const [kind, text, path, batchSize = '1000'] = process.argv.slice(2)
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
const gzip = { level: 6, ...(process.env.GZIP_THREADS ? { threads: Number(process.env.GZIP_THREADS) } : {}) }
// COMPRESSION=zstd (ZSTD_LEVEL, default 3): zstd instead of gzip.
const compression = process.env.COMPRESSION === 'zstd' ? { compression: { type: 'zstd', level: Number(process.env.ZSTD_LEVEL ?? 3) } } : { gzip }
const started = performance.now()
const result = await exportStream(
  kind === 'copy'
    ? { source: postgresCopySource({ pool, text }), ...compression, sink: fileSink({ path }) }
    : {
        source: postgresSource({ pool, text, batchSize: Number(batchSize) }),
        transform: kind === 'rows' ? (row) => row : undefined,
        format: process.env.FORMAT === 'jsonl' ? jsonl() : csv(),
        ...compression,
        sink: fileSink({ path }),
      },
)
const ms = performance.now() - started
await pool.end()
console.log(
  JSON.stringify({ ms, rows: result.rows, bytes: result.bytes, uncompressedBytes: result.uncompressedBytes, rssMb: process.resourceUsage().maxRSS / 1024 }),
)
