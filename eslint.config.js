// Lint: typescript-eslint with type information, plus the import rules of docs/architecture.md.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const noCli = { group: ['**/cli.js'], message: 'The library never depends on the CLI.' }
const noBullmq = { name: 'bullmq', message: 'The core never depends on bullmq (an optional peer): src/bullmq.ts takes structural job types.' }
const noPipeline = {
  group: ['**/export-stream.js', '**/bullmq.js', '**/jobs/*'],
  message: 'Sources, formats, stages and sinks never import the pipeline or the job processor: shared contracts live in src/types.ts.',
}
const noFormat = { group: ['**/formats/*', '!**/formats/values.js'], message: 'Sources, stages and sinks do not depend on a format.' }
const noOtherFormat = {
  group: ['./*', '!./formatter.js', '!./values.js', '!./columns.js', '!./zip.js'],
  message: 'A format never imports another format: share through formatter.ts, values.ts, columns.ts, zip.ts or src/types.ts.',
}
const restrict = (...patterns) => ['error', { patterns, paths: [noBullmq] }]

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/', 'examples/', 'coverage/', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Option objects hold plain functions (written as method signatures for their docs); no code
      // here relies on `this` in them.
      '@typescript-eslint/unbound-method': 'off',
    },
  },
  {
    // Tests inspect what they caught and parsed (`.catch((e) => e)`, JSON.parse): `any` there is the
    // point, as casts of parsed records are; async generators without await are async sources on purpose.
    files: ['test/**/*.ts'],
    rules: Object.fromEntries(
      [
        'no-unsafe-member-access',
        'no-unsafe-assignment',
        'no-unsafe-return',
        'no-unsafe-argument',
        'no-unsafe-call',
        'no-unnecessary-type-assertion',
        'require-await',
      ].map((rule) => [`@typescript-eslint/${rule}`, 'off']),
    ),
  },
  { files: ['src/**/*.ts'], ignores: ['src/cli.ts'], rules: { 'no-restricted-imports': restrict(noCli) } },
  { files: ['src/sources/**', 'src/stages/**', 'src/sinks/**'], rules: { 'no-restricted-imports': restrict(noCli, noPipeline, noFormat) } },
  { files: ['src/formats/**'], rules: { 'no-restricted-imports': restrict(noCli, noPipeline, noOtherFormat) } },
)
