import { createRequire } from 'node:module'
import { ExportError } from './errors.js'

const require = createRequire(import.meta.url)

/**
 * Loads an optional peer dependency when the stage that needs it is created, so that users of
 * other stages need not install it.
 */
export function loadOptional<T>(name: string, install: string): T {
  try {
    return require(name) as T
  } catch (error) {
    throw new ExportError('ERR_INVALID_OPTION', 'options', `This stage needs the \`${name}\` package: npm install ${install}`, { cause: error })
  }
}
