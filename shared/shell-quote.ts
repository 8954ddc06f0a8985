// Words for a POSIX shell, for the commands Warren prints for an operator to run or paste.

/**
 * A word for a POSIX shell: as it is when no shell would change it, else in single quotes.
 * `~` is never left bare (bash expands it after the `=` or a `:` of a word such as `home=~`
 * or `path=a:~`, even as an argument), nor a leading `=` (zsh expands `=ls` to a path); a
 * `#` or anything else outside the set below is quoted too.
 */
export function shellQuote(word: string): string {
  return /^[\w@%+:,./-][\w@%+=:,./-]*$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}
