import { defineConfig } from 'tsup'

export default defineConfig([
  {
    // shard-worker: the worker threads of in-process shards, loaded by path beside the chunks.
    entry: { index: 'src/index.ts', bullmq: 'src/bullmq.ts', 'shard-worker': 'src/shard-worker.ts' },
    format: ['esm', 'cjs'],
    // Code shared by the entries (ExportError above all) lives in one chunk in both formats, so
    // that `instanceof ExportError` holds across `stream-export` and `stream-export/bullmq`.
    splitting: true,
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    shims: true,
  },
  {
    // The command-line tool: ESM only, with its shebang kept.
    entry: ['src/cli.ts'],
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
  },
])
