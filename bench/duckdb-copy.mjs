// One DuckDB conversion in this process, for the file-ETL suite's baseline:
//   node bench/duckdb-copy.mjs <in.csv> <out> '<COPY options>'
import { DuckDBInstance } from '@duckdb/node-api'

const [from, to, options] = process.argv.slice(2)
const connection = await (await DuckDBInstance.create(':memory:')).connect()
await connection.run(`COPY (SELECT * FROM read_csv('${from}')) TO '${to}' (${options})`)
