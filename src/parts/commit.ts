// The commit rule of an export in parts (docs/parts.md): parts are written under names no other
// run uses; the manifest, written last, is the commit point; only after it has landed are the
// parts the previous manifest listed and this one does not removed. A failed run removes only
// what it wrote, keeps going past a failed delete and reports what it could not remove.
import { ExportError } from '../core/errors.js'
import { removeAll } from '../core/remove-all.js'
import type { Manifest, PartStore } from '../core/types.js'
import { baseName, manifestPath, partBeside } from './names.js'
import { parseManifest } from './manifest.js'

type Kind = Pick<Manifest, 'format' | 'compression' | 'name'>

/** The manifest at the export's manifest name, if any; ERR_SINK naming it when it cannot be read. */
async function previousManifest<L extends object>(store: PartStore<L>): Promise<Manifest<L> | undefined> {
  const where = manifestPath(store.name)
  const bytes = await store.read(where).catch((error: Error) => {
    throw new ExportError('ERR_SINK', 'sink', `Reading ${where} (an export in parts commits there) failed: ${error.message}`, { cause: error })
  })
  return bytes === undefined ? undefined : parseManifest<L>(bytes, where)
}

/**
 * The manifest there must be one of this same export: by its destination's name, or, for a
 * manifest that does not name it, by format and compression and parts all named as this export's.
 * Two exports that would share a manifest (`orders.csv`, then `orders.jsonl`) are refused: the
 * second would orphan the first's parts, or remove files that are not its own.
 */
function checkSameExport(store: PartStore<object>, previous: Manifest<object> | undefined, kind: Kind): void {
  if (previous === undefined) return
  const name = kind.name ?? baseName(store.name)
  const same =
    previous.name !== undefined
      ? previous.name === name
      : previous.format === kind.format && previous.compression === kind.compression && previous.parts.every((part) => partBeside(store.name, part.name, true))
  if (!same)
    throw new ExportError(
      'ERR_SINK',
      'sink',
      `${manifestPath(store.name)} commits the export ${previous.name ?? `of ${previous.format} parts`}, not ${name}: name this export apart (its parts would orphan that one's)`,
    )
}

/** Before any part: the manifest's name is free, or holds a manifest of this same export. */
export async function claimManifest(store: PartStore<object>, kind: Kind): Promise<void> {
  checkSameExport(store, await previousManifest(store), kind)
}

/** How a commit went: landed (with what it could not remove afterwards), or not, or unknown. */
export type CommitOutcome<L> = { landed: true; location: L; leftBehind: string[] } | { landed: false | 'unknown'; error: unknown }

/**
 * A failure the store answered as a refusal (a 4xx, a file system's error): nothing was written.
 * Anything else (a 5xx, a lost connection, a timeout) may have written all the same.
 */
function refused(error: unknown): boolean {
  const { $metadata, syscall } = (error ?? {}) as { $metadata?: { httpStatusCode?: number }; syscall?: string }
  const status = $metadata?.httpStatusCode
  return status !== undefined ? status >= 400 && status < 500 : syscall !== undefined
}

/**
 * Writes the manifest (the commit point). A write that fails is read back: if the manifest there
 * is byte for byte this one (a reply lost after the store kept it), it has landed; if the store
 * refused the write, it has not; otherwise (a 5xx, a lost connection: the write may still land,
 * or the read-back failed) whether it landed is unknown and nothing may be removed. Once it has
 * landed, the parts the previous manifest listed and this one does not are removed.
 */
export async function commitManifest<L extends object>(
  store: PartStore<L>,
  body: Buffer,
  manifest: Manifest<L>,
  stopped: () => boolean = () => false,
  /** The path of a part a manifest lists, if it is named as a part of this export (default: `partBeside`). */
  partOf?: (name: string) => string | undefined,
): Promise<CommitOutcome<L>> {
  const where = manifestPath(store.name)
  // The parts first: a manifest is never durable before what it lists.
  await store.sync?.()
  // Checked again here: another export may have taken the name since this one started.
  const previous = await previousManifest(store)
  checkSameExport(store, previous, manifest)
  // The write is the commit point: a stop that came while the previous manifest was read wins.
  if (stopped()) return { landed: false, error: new ExportError('ERR_ABORTED', 'sink', 'The export was stopped before its manifest was written') }
  let location: L
  try {
    location = await store.write(where, body)
  } catch (error) {
    const stored = await store.read(where).catch(() => null)
    if (stored === null) return { landed: 'unknown', error }
    if (stored === undefined || !stored.equals(body)) return { landed: refused(error) ? false : 'unknown', error }
    location = store.locationOf(where)
  }
  const kept = new Set(manifest.parts.map((part) => part.name))
  const legacy = previous?.name === undefined
  const ownPart = partOf ?? ((name: string) => partBeside(store.name, name, legacy))
  const stale = (previous?.parts ?? []).filter((part) => !kept.has(part.name)).map((part) => ownPart(part.name))
  const leftBehind = await removeAll(
    stale.filter((name) => name !== undefined),
    (name) => store.remove(name),
  )
  return { landed: true, location, leftBehind }
}

const UNKNOWN = new WeakSet<object>()

/** The error of a commit that did not land (ERR_ABORTED when it was stopped, otherwise ERR_SINK). */
export function commitError(outcome: { landed: false | 'unknown'; error: unknown }): ExportError {
  if (outcome.error instanceof ExportError && outcome.error.code === 'ERR_ABORTED') return outcome.error
  const message =
    outcome.landed === 'unknown'
      ? 'Writing the manifest failed and whether it landed is unknown (the store may still write it, or it could not be read back): its parts are kept'
      : 'Writing the manifest failed'
  const error = new ExportError('ERR_SINK', 'sink', `${message}: ${(outcome.error as Error)?.message ?? String(outcome.error)}`, { cause: outcome.error })
  if (outcome.landed === 'unknown') UNKNOWN.add(error)
  return error
}

/** Whether an export failed at a commit that may yet land (commitError's unknown case): nothing of it may be removed. */
export const commitUnknown = (error: unknown): boolean => typeof error === 'object' && error !== null && UNKNOWN.has(error)
