import { invalidOption } from '../core/errors.js'

/**
 * A structured logger as pino (and bunyan, and a pino-compatible wrapper of winston) takes it:
 * `logger.info({ event: 'commit', ... }, 'export committed')`. An export logs `start` and
 * `commit` (info), `part` (debug), `cleanup` (warn: what a failed export could not remove) and
 * `failure` (error).
 */
export interface ExportLogger {
  info(fields: object, message?: string): void
  error(fields: object, message?: string): void
  warn?(fields: object, message?: string): void
  debug?(fields: object, message?: string): void
}

/** The `logger` option, checked (ERR_INVALID_OPTION). */
export function checkLogger(value: unknown): ExportLogger | undefined {
  if (value === undefined) return undefined
  const { info, error } = (value ?? {}) as Partial<ExportLogger>
  if (typeof value !== 'object' || typeof info !== 'function' || typeof error !== 'function')
    invalidOption('logger', 'a logger with info() and error() methods, such as pino()', value)
  return value as ExportLogger
}
