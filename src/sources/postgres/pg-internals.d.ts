// pg's own value conversion (Dates, arrays, Buffers, toPostgres), which pg-adapter.ts uses to
// inline parameters exactly as pg would send them. @types/pg does not declare this module.
declare module 'pg/lib/utils.js' {
  const utils: { prepareValue(value: unknown): string | Buffer | null | undefined }
  export default utils
}
