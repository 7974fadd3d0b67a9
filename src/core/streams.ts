// Small helpers over Node streams.
import type { Readable, Writable } from 'node:stream'

/** Resolves once a stream has closed (a destroyed one: its clean-up done), whatever error it had. */
export const whenClosed = (stream: Readable | Writable): Promise<void> =>
  stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()))
