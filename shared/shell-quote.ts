// Words for a POSIX shell, for the commands Warren prints for an operator to run or paste.

/** A word for a POSIX shell: as it is when safe, else in single quotes. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./~-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}
