import { defineConfig } from 'tsup'

export default defineConfig([
  {
    // shard-worker (src/shards/worker.ts): the worker threads of in-process shards; parquet-worker
    // (src/formats/parquet/encoder.ts): Parquet's row group encoders. Both loaded by path beside the chunks.
    entry: {
      index: 'src/index.ts',
      bullmq: 'src/bullmq.ts',
      lambda: 'src/lambda.ts',
      'shard-worker': 'src/shards/worker.ts',
      'parquet-worker': 'src/formats/parquet/encoder.ts',
    },
    format: ['esm', 'cjs'],
    // Code shared by the entries (ExportError above all) lives in one chunk in both formats, so
    // that `instanceof ExportError` holds across `stream-export` and `stream-export/bullmq`.
    splitting: true,
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node22',
    shims: true,
  },
  {
    // The command-line tool (src/cli/, its entry main.ts): dist/cli.js, ESM only, with its shebang kept.
    entry: { cli: 'src/cli/main.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node22',
  },
])
