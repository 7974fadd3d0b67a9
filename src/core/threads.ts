// What the library's worker threads (Parquet encoders, shard readers) are started with.

/**
 * The parent's Node options, less those a thread cannot take. A thread inherits `process.execArgv`,
 * and `--input-type` (as in `node --input-type=module -e '…'`) fails its start: it is for the
 * main script's text only.
 */
export function threadExecArgv(): string[] {
  const argv = process.execArgv
  const kept: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--input-type')
      i++ // and its value
    else if (!arg.startsWith('--input-type=')) kept.push(arg)
  }
  return kept
}
