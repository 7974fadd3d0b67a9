// A job's source between its resolve() and exportStream: the processor asks S3 about the key first
// (uploads to abort, a checkpoint's upload), and the source may already be reading.
import { toExportError } from '../core/errors.js'
import type { ExportSpec } from './types.js'

interface SourceLike {
  destroy?(): void
  on?(event: 'error', listener: (error: Error) => void): unknown
}

/**
 * Holds the first error the spec's source emits until exportStream listens to it (without a
 * listener it would crash the worker): `started()` throws it as ERR_SOURCE, to call right before
 * exportStream. `discard()` destroys the source and the format, for a job that fails or has
 * nothing to export before exportStream took them (it gives the source's connection back).
 */
export function holdSource(spec: Pick<ExportSpec, 'source' | 'format'>): { started(): void; discard(): void } {
  const source = spec.source as SourceLike
  let early: Error | undefined
  source.on?.('error', (error) => void (early ??= error))
  return {
    started() {
      if (early) throw toExportError(early, 'ERR_SOURCE', 'source')
    },
    // Never throws: it runs on the way out of a failure, whose error it must not replace.
    discard() {
      for (const stage of [source, spec.format as SourceLike | undefined]) {
        try {
          stage?.destroy?.()
        } catch {
          // a stage that cannot be destroyed holds nothing to give back
        }
      }
    },
  }
}
