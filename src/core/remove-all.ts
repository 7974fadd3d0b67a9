// Removing many things where each may fail for a while: a failed run's parts, a flow's leftovers.

const ATTEMPTS = 3
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Removes every name, each tried up to three times (a store's transient failures), never stopping
 * at one that fails. Resolves with the names it could not remove.
 */
export async function removeAll(names: string[], remove: (name: string) => Promise<void>): Promise<string[]> {
  const left: string[] = []
  for (const name of names) {
    for (let attempt = 1; ; attempt++) {
      try {
        await remove(name)
        break
      } catch {
        if (attempt === ATTEMPTS) {
          left.push(name)
          break
        }
        await pause(100 * attempt)
      }
    }
  }
  return left
}
