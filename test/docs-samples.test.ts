// Every ```ts sample of the README and docs/ is compiled, as a user's strict TypeScript module
// importing 'stream-export', against the library's own types. (```text blocks are signatures
// and listings, not code.) Free names a fragment leaves to the reader (`pool`, `s3`, `sink`...)
// are declared once below, with the types a real program would give them.
import { execFile } from 'node:child_process'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, expect, it } from 'vitest'
import * as library from '../src/index.js'

const exec = promisify(execFile)
const repo = new URL('..', import.meta.url).pathname
const dir = join(repo, 'node_modules', '.cache', 'docs-samples')

const GLOBALS = `// Names the samples use without defining them.
declare const pool: import('pg').Pool
declare const s3: import('@aws-sdk/client-s3').S3Client
declare const client: import('@aws-sdk/client-s3').S3Client
declare const bucket: string
declare const key: string
declare const jobId: string
declare const secret: string
declare const accessKeyId: string
declare const secretAccessKey: string
declare const rawBody: string
declare const req: { headers: Record<string, string | undefined> }
declare const res: { send(body: string): void }
declare const sink: import('stream-export').Sink
declare const source: import('node:stream').Readable
declare let saved: { checkpoint?: unknown } | undefined
declare const db: any
declare function rows(): AsyncGenerator<Record<string, unknown>>
declare function rowsFromSomewhere(): AsyncGenerator<Record<string, unknown>>
declare function maskEmail(email: unknown): string
declare function stringify(rows: unknown[]): string
`

async function samples(): Promise<Array<{ name: string; code: string }>> {
  const files = ['README.md', ...(await readdir(join(repo, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
  const found: Array<{ name: string; code: string }> = []
  for (const file of files) {
    const text = await readFile(join(repo, file), 'utf8')
    let n = 0
    for (const [, code] of text.matchAll(/```ts\n([\s\S]*?)```/g)) found.push({ name: `${file.replace(/[/.]/g, '_')}_${++n}`, code })
  }
  return found
}

afterAll(() => rm(dir, { recursive: true, force: true }))

it('every ts sample in the README and docs/ compiles under strict TypeScript', async () => {
  const all = await samples()
  expect(all.length).toBeGreaterThan(20)
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  // A fragment that does not import the library gets its exports, as the docs around it imply.
  const names = Object.keys(library).join(', ')
  for (const { name, code } of all) {
    // A listing of a public interface (`interface Progress {...}`) must be that interface, field for field.
    const listed = /^interface (\w+) \{/.exec(code)?.[1]
    if (listed) {
      const same = `type Real = import('stream-export').${listed}
type Keys = [keyof ${listed}] extends [keyof Real] ? ([keyof Real] extends [keyof ${listed}] ? true : false) : false
const same: [${listed}] extends [Real] ? ([Real] extends [${listed}] ? Keys : false) : false = true
void same
`
      await writeFile(join(dir, `${name}.ts`), `${code}\n${same}export {}\n`)
      continue
    }
    const imports = /from 'stream-export'/.test(code) ? '' : `import { ${names} } from 'stream-export'\n`
    await writeFile(join(dir, `${name}.ts`), `${imports}${code}\nexport {}\n`)
  }
  await writeFile(join(dir, 'globals.d.ts'), GLOBALS)
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module' }))
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        skipLibCheck: true,
        types: ['node'],
        paths: {
          'stream-export': [join(repo, 'src/index.ts')],
          'stream-export/bullmq': [join(repo, 'src/bullmq.ts')],
          'stream-export/lambda': [join(repo, 'src/lambda.ts')],
        },
      },
      include: ['*.ts', join(repo, 'src/sources/postgres/pg-internals.d.ts')],
    }),
  )
  const result = await exec(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', dir], { cwd: dir }).catch((e) => e)
  expect(result.stdout ?? '').toBe('')
}, 60_000)
