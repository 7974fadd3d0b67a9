import { invalidOption } from './errors.js'

// Validation helpers shared by every factory: they run when the factory is called, before any I/O.

export function checkObject(name: string, value: unknown): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalidOption(name, 'an object', value)
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
