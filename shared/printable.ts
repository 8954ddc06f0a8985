// Text from the network shown on a terminal: anything a terminal would act on rather than
// show is written as an escape, so that a value can neither clear the screen, move the
// cursor, nor start a line of its own.

/**
 * C0 and C1 controls and DEL (Cc), format characters such as bidirectional overrides that
 * reorder what is shown (Cf), line and paragraph separators, and lone surrogates.
 */
const UNPRINTABLE = '[\\p{Cc}\\p{Cf}\\p{Cs}\\p{Zl}\\p{Zp}]'
const ANY_UNPRINTABLE = new RegExp(UNPRINTABLE, 'u')
const EVERY_UNPRINTABLE = new RegExp(UNPRINTABLE, 'gu')

/** `text` with every unprintable character written as `\x1b`, `\u202e` or `\u{e0001}`. */
export function printable(text: string): string {
  return text.replace(EVERY_UNPRINTABLE, (c) => {
    const code = c.codePointAt(0)!
    const hex = code.toString(16)
    if (code < 0x100) return `\\x${hex.padStart(2, '0')}`
    return code <= 0xffff ? `\\u${hex.padStart(4, '0')}` : `\\u{${hex}}`
  })
}

/** Whether `text` holds nothing a terminal would act on. */
export function isPrintable(text: string): boolean {
  return !ANY_UNPRINTABLE.test(text)
}
