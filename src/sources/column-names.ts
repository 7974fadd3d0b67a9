/**
 * Column names made unique, so that no column of a result is lost when rows become objects (a join
 * of two tables with an `id` each, `select 1 as a, 2 as a`): a repeated name becomes `name_2`,
 * `name_3`... skipping names the result already has. Unique names are returned unchanged.
 */
export function uniqueColumnNames(names: readonly string[]): string[] {
  const taken = new Set(names)
  const seen = new Set<string>()
  return names.map((name) => {
    if (!seen.has(name)) {
      seen.add(name)
      return name
    }
    let n = 2
    while (taken.has(`${name}_${n}`)) n++
    const unique = `${name}_${n}`
    taken.add(unique)
    seen.add(unique)
    return unique
  })
}
