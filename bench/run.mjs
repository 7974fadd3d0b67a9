// npm run bench [-- suite ...]: runs the named suites (default: all) and rewrites their sections
// of docs/benchmarks.md.
const suites = {
  core: './core.mjs',
  postgres: './postgres.mjs',
  s3: './s3.mjs',
  etl: './etl.mjs',
  mongo: './mongo.mjs',
  parquet: './parquet.mjs',
  pgzip: './pgzip.mjs',
  split: './split.mjs',
  shards: './shards.mjs',
  'shards-local': './shards-local.mjs',
  xlsx: './xlsx.mjs',
  zstd: './zstd.mjs',
  partitions: './partitions.mjs',
  integrity: './integrity.mjs',
  throttle: './throttle.mjs',
  delivery: './delivery.mjs',
  'file-etl': './file-etl.mjs',
  'csv-parsers': './csv-parsers.mjs',
  lambda: './lambda.mjs',
  mysql: './mysql.mjs',
  azure: './azure.mjs',
}
const chosen = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(suites)
for (const name of chosen) {
  if (!suites[name]) throw new Error(`Unknown suite ${name}; known: ${Object.keys(suites).join(', ')}`)
  console.error(`== ${name}`)
  await import(suites[name])
}
