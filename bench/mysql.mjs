// MySQL suite: 1M rows of a MariaDB (or MySQL) table -> csv.gz by mysqlSource, against the
// server's own client piped to gzip (`mysql --batch --raw | gzip -6`), same run. Needs MYSQL_URL
// (default mysql://root@127.0.0.1:3306/test) and the `mariadb` (or `mysql`) client.
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, statSync } from 'node:fs'
import mysql from 'mysql2'
import { fmt, machine, median, runChild, timeShell, writeSection } from './lib.mjs'

const ROWS = 1_000_000
const TABLE = 'bench_mysql_statements'
const url = new URL(process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test')
process.env.MYSQL_URL = url.href
const repeat = Number(process.env.BENCH_REPEAT ?? 3)
const dir = new URL('./.data/', import.meta.url).pathname
mkdirSync(dir, { recursive: true })

const pool = mysql.createPool({ uri: url.href, connectionLimit: 1 }).promise()
await pool.query(`drop table if exists ${TABLE}`)
await pool.query(`create table ${TABLE} (id bigint primary key, user_name varchar(40) not null, email varchar(80) not null, currency char(3) not null,
  amount decimal(14,2) not null, posted_at datetime(6) not null, memo text)`)
await pool.query(`insert into ${TABLE} select seq, concat('user ', seq % 50000), concat('user', seq % 50000, '@example.com'), elt(1 + seq % 3, 'EUR', 'USD', 'GBP'),
  round((seq * 7919 % 1000000) / 100 - 5000, 2), timestampadd(microsecond, seq * 1234567, '2026-01-01'), if(seq % 10 = 0, null, concat('memo, "', md5(seq), '"'))
  from seq_1_to_${ROWS}`)
await pool.end()

const client = ['mariadb', 'mysql'].find((name) => {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})
const baseline = `${client} --batch --raw -h ${url.hostname} -P ${url.port || 3306} -u ${decodeURIComponent(url.username)} ${url.pathname.slice(1)} -e 'select * from ${TABLE}' | gzip -6 > ${dir}mysql-client.tsv.gz`
const ours = []
const theirs = []
for (let round = 0; round < repeat; round++) {
  theirs.push({ ms: timeShell(baseline) })
  ours.push(runChild(new URL('mysql-export.mjs', import.meta.url).pathname, [TABLE, `${dir}mysql-bench.csv.gz`]))
}
const o = median(ours)
const t = median(theirs)
const size = (path) => statSync(path).size
const sizes = { ours: size(`${dir}mysql-bench.csv.gz`), theirs: size(`${dir}mysql-client.tsv.gz`) }
rmSync(`${dir}mysql-bench.csv.gz`)
rmSync(`${dir}mysql-client.tsv.gz`)
console.error(`mysqlSource ${fmt.s(o.ms)} s (${o.rssMb.toFixed(0)} MB), ${client} | gzip -6 ${fmt.s(t.ms)} s: ${fmt.x(o.ms / t.ms)}`)

const server = execFileSync(client, [
  '-h',
  url.hostname,
  '-P',
  String(url.port || 3306),
  '-u',
  decodeURIComponent(url.username),
  '-N',
  '-e',
  'select version()',
])
  .toString()
  .trim()
writeSection(
  'mysql',
  `
## MySQL / MariaDB: 1M rows -> csv.gz, against the server's client piped to gzip

Run: \`npm run bench -- mysql\` on ${machine()}, ${new Date().toISOString().slice(0, 10)}; server ${server} on loopback.
A table of 1,000,000 statement rows (BIGINT key, VARCHAR, CHAR, DECIMAL(14,2), DATETIME(6), TEXT with
quotes and NULLs). \`mysqlSource\` (mysql2's text protocol, every cell read by the source's value
policy) -> \`csv()\` -> gzip on every core -> \`fileSink\`, in a child process, against
\`${client} --batch --raw ... | gzip -6\` (tab-separated, no quoting, NULL as the text \`NULL\`: less work
than CSV). ${repeat} rounds, interleaved; medians.

| 1,000,000 rows | wall s | ratio | CPU s | peak RSS MB | output MB |
|---|---:|---:|---:|---:|---:|
| \`${client} --batch --raw \\| gzip -6\` | ${fmt.s(t.ms)} | 1.00x | | | ${fmt.mb(sizes.theirs)} |
| mysqlSource -> csv -> gzip | ${fmt.s(o.ms)} | **${fmt.x(o.ms / t.ms)}** | ${fmt.s(o.cpuMs)} | ${o.rssMb.toFixed(0)} | ${fmt.mb(sizes.ours)} |
`,
)
