import { defineConfig } from 'tsup'

export default defineConfig([
  {
    entry: ['src/index.ts', 'src/bullmq.ts'],
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
