// Recipe: a large CSV dump (plain or .gz) -> mask the e-mail addresses -> JSON Lines, gzipped.
// Flat memory whatever the file size; progress from the bytes read.
//   node examples/mask-emails.mjs users.csv.gz users-masked.jsonl.gz
import { csvSource, exportStream, fileSink, jsonl } from 'stream-export'

/** `jane.doe@example.com` -> `j***@example.com` */
export function maskEmail(email) {
  const at = email.lastIndexOf('@')
  return at > 0 ? `${email[0]}***${email.slice(at)}` : email
}

const [input, output] = process.argv.slice(2)
if (!input || !output) {
  console.error('usage: node examples/mask-emails.mjs <input.csv[.gz]> <output.jsonl.gz>')
  process.exit(2)
}

const result = await exportStream({
  source: csvSource({ path: input }),
  transform: (row) => ({ ...row, email: maskEmail(row.email ?? '') }),
  format: jsonl(),
  gzip: true,
  sink: fileSink({ path: output }),
  onProgress: (p) => console.error(`${p.percent?.toFixed(1) ?? '?'}% of ${((p.inputTotalBytes ?? 0) / 1e6).toFixed(0)} MB, ${p.rows} rows`),
})
console.log(JSON.stringify({ rows: result.rows, bytes: result.bytes, durationMs: Math.round(result.durationMs) }))
