// "Did you mean": the known word closest to a misspelt one.

/** The first of `known` within `maxEdits` single-character edits of `word`, if any. */
export function closest(word: string, known: readonly string[], maxEdits = 2): string | undefined {
  return known.find((candidate) => editDistance(candidate, word) <= maxEdits)
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}
