// One export in this process: a MySQL/MariaDB table -> csv -> gzip(6) -> a file.
//   node bench/mysql-export.mjs <table> <path>    (MYSQL_URL)
import mysql from 'mysql2'
import { csv, exportStream, fileSink, mysqlSource } from 'stream-export'

const [table, path] = process.argv.slice(2)
const pool = mysql.createPool({ uri: process.env.MYSQL_URL, connectionLimit: 2 })
const started = performance.now()
const result = await exportStream({ source: mysqlSource({ pool, query: `select * from ${table}` }), format: csv(), gzip: true, sink: fileSink({ path }) })
const ms = performance.now() - started
await pool.promise().end()
const { userCPUTime, systemCPUTime, maxRSS } = process.resourceUsage()
console.log(JSON.stringify({ ms, cpuMs: (userCPUTime + systemCPUTime) / 1000, rows: result.rows, bytes: result.bytes, rssMb: maxRSS / 1024 }))
