// How the library's worker threads (Parquet encoders, shard readers) are started.
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker, type WorkerOptions } from 'node:worker_threads'

/**
 * A thread's file beside the module at `moduleUrl`: the build's `<name>.js`, or `.cjs` beside the
 * CommonJS build; run from src (a `.ts` module), `dev` beside it when given.
 */
export function threadFile(moduleUrl: string, name: string, dev?: string): string {
  const here = fileURLToPath(moduleUrl)
  const extension = extname(here)
  if (extension === '.ts' && dev !== undefined) return join(dirname(here), dev)
  return join(dirname(here), `${name}${extension === '.cjs' ? '.cjs' : '.js'}`)
}

const isInputType = (arg: string) => arg === '--input-type' || arg.startsWith('--input-type=')

/**
 * A worker thread on `file`. A thread inherits the parent's Node options (`process.execArgv`),
 * unchecked, except in one case: `--input-type` (as in `node --input-type=module -e '…'`) fails a
 * thread's start, as it is for the main script's text only. Then the thread gets the other options,
 * which Node checks: if one is a V8 or process-wide option a thread cannot take
 * (`--max-old-space-size`), it gets none.
 */
export function startThread(file: string, options: WorkerOptions): Worker {
  const argv = process.execArgv
  if (!argv.some(isInputType)) return new Worker(file, options)
  const kept: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--input-type')
      i++ // and its value
    else if (!isInputType(argv[i]!)) kept.push(argv[i]!)
  }
  try {
    return new Worker(file, { ...options, execArgv: kept })
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw error
    return new Worker(file, { ...options, execArgv: [] })
  }
}
