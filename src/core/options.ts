import { ExportError, invalidOption } from './errors.js'

// Validation helpers shared by every factory: they run when the factory is called, before any I/O.

/**
 * `value` is a plain options object; with `known`, every key it has is one of them: a misspelt
 * option (`gzp`, `seperator`) is refused, naming the key and the nearest known one, instead of
 * being ignored.
 */
export function checkObject(name: string, value: unknown, known?: OptionNames): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalidOption(name, 'an object', value)
  if (known === undefined) return
  for (const key of Object.keys(value)) {
    if (known.has(key)) continue
    const nearest = nearestName(key, known)
    const hint = nearest === undefined ? `; the options are ${[...known].map((k) => `\`${k}\``).join(', ')}` : ` (did you mean \`${nearest}\`?)`
    throw new ExportError('ERR_INVALID_OPTION', 'options', `Unknown option \`${key}\` in \`${name}\`${hint}`)
  }
}

/** The option names a factory takes (see `optionNames`). */
export type OptionNames = ReadonlySet<string>

/**
 * The names of an options type, for `checkObject`: the compiler holds the record to exactly the
 * keys of `T`, so the list cannot drift from the type.
 */
export function optionNames<T extends object>(names: Record<keyof T, true>): OptionNames {
  return new Set(Object.keys(names))
}

// The known name closest to a misspelt one (edit distance, at most a third of its length).
function nearestName(key: string, known: OptionNames): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(key.length / 3)) + 1
  for (const name of known) {
    const distance = editDistance(key.toLowerCase(), name.toLowerCase())
    if (distance < bestDistance) [best, bestDistance] = [name, distance]
  }
  return best
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    previous = current
  }
  return previous[b.length]!
}

export function checkPositiveInteger(name: string, value: unknown): asserts value is number {
  if (!Number.isSafeInteger(value) || (value as number) <= 0) invalidOption(name, 'a positive integer', value)
}

/** The longest delay a Node timer keeps (2^31 - 1 ms, about 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** A delay for a timer: a positive integer of milliseconds, at most MAX_TIMER_MS. */
export function checkTimerMs(name: string, value: unknown): asserts value is number {
  if (!Number.isSafeInteger(value) || (value as number) <= 0 || (value as number) > MAX_TIMER_MS) {
    invalidOption(name, `a positive integer of milliseconds, at most ${MAX_TIMER_MS}`, value)
  }
}

export function checkNonNegativeInteger(name: string, value: unknown): asserts value is number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) invalidOption(name, 'a non-negative integer', value)
}

export function checkString(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value === '') invalidOption(name, 'a non-empty string', value)
}

/** A column name or a non-empty array of them (`key`, `orderBy`), as a list. */
export function checkColumns(name: string, value: string | string[]): string[] {
  const list = Array.isArray(value) ? value : [value]
  if (list.length === 0) invalidOption(name, 'a column name or a non-empty array of them', value)
  list.forEach((column, i) => checkString(Array.isArray(value) ? `${name}[${i}]` : name, column))
  return list
}

export function checkBoolean(name: string, value: unknown): asserts value is boolean {
  if (typeof value !== 'boolean') invalidOption(name, 'a boolean', value)
}

export function checkFunction(name: string, value: unknown): void {
  if (typeof value !== 'function') invalidOption(name, 'a function', value)
}

export function checkOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): asserts value is T {
  if (!allowed.includes(value as T)) invalidOption(name, `one of ${allowed.map((a) => `\`${a}\``).join(', ')}`, value)
}

/** Exactly one of `names` is set in `options` (e.g. pool | client | connectionString). */
export function checkExactlyOne(options: object, names: readonly string[]): void {
  const given = names.filter((name) => (options as Record<string, unknown>)[name] !== undefined)
  if (given.length !== 1) invalidOption(names.join(' | '), 'exactly one of them', given)
}
