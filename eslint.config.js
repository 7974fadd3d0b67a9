// Lint: typescript-eslint with type information, plus the import rules of docs/architecture.md.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import { importX } from 'eslint-plugin-import-x'
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript'

// The layering of docs/architecture.md: what each folder of src/ may import (the folders are
// named once here: a newcomer reads the whole map in these lines).
const noCli = { group: ['**/cli/*'], message: 'Nothing imports the CLI (src/cli/).' }
const noBullmq = { name: 'bullmq', message: 'The core never depends on bullmq (an optional peer): src/jobs/ takes structural job types.' }
const noJobs = { group: ['**/jobs/*', '**/bullmq.js'], message: 'Only the public faces import the jobs.' }
const noPipeline = { group: ['**/pipeline/*'], message: 'Sources, formats, stages, sinks and the part model never import the pipeline (exportStream).' }
const noParts = { group: ['**/parts/*'], message: 'Only the pipeline and the jobs use the part model.' }
const noSink = { group: ['**/sinks/**'], message: 'Sources, formats, stages and the part model never import a sink.' }
const noSource = { group: ['**/sources/**', '**/shards/*'], message: 'Formats, stages, sinks and the part model never import a source.' }
const noAnyFormat = { group: ['**/formats/**'], message: 'Sources, stages, sinks and the part model never import a format, formats/values.ts included.' }
const noStage = { group: ['**/stages/*'], message: 'Sources and sinks never import a stage.' }
const noOutsideCore = { regex: '^\\.\\./(?!core/)', message: 'src/core/ holds contracts and helpers: it imports nothing else of src/.' }
const noOtherFormat = {
  group: ['./*', '!./formatter.js', '!./values.js', '!./columns.js'],
  message: 'A format never imports another format: share through formatter.ts, values.ts, columns.ts or src/core/types.ts.',
}
// A format in a folder of its own (src/formats/xlsx/) imports its own files; from src/formats/, only the shared modules.
const noOtherFormatFromFolder = {
  regex: '^\\.\\./(?!(formatter|values|columns)\\.js$)[^./]',
  message: 'A format never imports another format: share through formatter.ts, values.ts, columns.ts or src/core/types.ts.',
}
const restrict = (...patterns) => ['error', { patterns, paths: [noBullmq] }]

export default tseslint.config(
  // Plain JavaScript run by node itself (examples, a fixture's child process): outside the type-aware rules.
  { ignores: ['dist/', 'node_modules/', 'bench/', 'examples/', 'coverage/', 'eslint.config.js', 'test/fixtures/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Option objects hold plain functions (written as method signatures for their docs); no code
      // here relies on `this` in them.
      '@typescript-eslint/unbound-method': 'off',
      // Each `!` is a claim the types cannot check: reported, to be read where they gather.
      '@typescript-eslint/no-non-null-assertion': 'warn',
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
        'no-non-null-assertion',
      ].map((rule) => [`@typescript-eslint/${rule}`, 'off']),
    ),
  },
  { files: ['src/**/*.ts'], ignores: ['src/cli/**'], rules: { 'no-restricted-imports': restrict(noCli) } },
  { files: ['src/core/**'], rules: { 'no-restricted-imports': restrict(noOutsideCore) } },
  {
    files: ['src/sources/**', 'src/shards/**'],
    rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noParts, noSink, noAnyFormat, noStage) },
  },
  // The shards' worker thread runs csv() or jsonl() when the shards encode: the one module of them that may import a format.
  { files: ['src/shards/worker.ts'], rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noParts, noSink, noStage) } },
  { files: ['src/formats/*'], rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noParts, noSink, noSource, noOtherFormat) } },
  { files: ['src/formats/*/**'], rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noParts, noSink, noSource, noOtherFormatFromFolder) } },
  { files: ['src/stages/**'], rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noParts, noSink, noSource, noAnyFormat) } },
  { files: ['src/sinks/**'], rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noParts, noSource, noAnyFormat, noStage) } },
  { files: ['src/parts/**'], rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noSink, noSource, noAnyFormat) } },
  { files: ['src/pipeline/**'], rules: { 'no-restricted-imports': restrict(noCli, noJobs) } },
  // Delivery (names, notifiers, the export log, expiry) works on what a job committed: never the pipeline, a format or a stage.
  { files: ['src/delivery/**'], rules: { 'no-restricted-imports': restrict(noCli, noJobs, noPipeline, noAnyFormat, noStage) } },
  // No import cycles anywhere in src/ (type imports included: a cycle of types is a knot all the same).
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: { ...importX.flatConfigs.typescript.settings, 'import-x/resolver-next': [createTypeScriptImportResolver()] },
    rules: { 'import-x/no-cycle': ['error', { ignoreExternal: true }] },
  },
)
