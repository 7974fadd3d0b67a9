// Small helpers over Node streams.
import { Readable, Writable } from 'node:stream'

/** Resolves once a stream has closed (a destroyed one: its clean-up done), whatever error it had. */
export const whenClosed = (stream: Readable | Writable): Promise<void> =>
  stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()))

/** Destroys each value that is a stream (options refused before anything ran: the given streams are closed). */
export function destroyAll(values: unknown[]): void {
  for (const value of values) if (value instanceof Readable || value instanceof Writable) value.destroy()
}
