// Plain-text tables in the layout Teleport users know from `tctl`: a header row, a row of
// dashes as wide as each column, and columns padded with spaces. Cells come from the
// network (a node's labels, say), so control characters in them are printed as escapes.

import { printable } from '../shared/printable.ts'

const GAP = '  '

/** Width as a terminal shows it for the text we print: one column per code point. */
export function textWidth(text: string): number {
  let width = 0
  for (const _ of text) width++
  return width
}

function padEnd(text: string, width: number): string {
  return text + ' '.repeat(Math.max(0, width - textWidth(text)))
}

/**
 * The table as text, one line per row, each ending in a newline. Columns are separated by
 * two spaces; lines carry no trailing spaces. Short rows are padded with empty cells.
 * Unprintable characters (an escape that clears the screen, a CR/LF that would start a
 * forged row) are written as `\x1b`-style escapes.
 */
export function formatTable(headers: string[], unsafeRows: string[][]): string {
  const rows = unsafeRows.map((row) => row.map(printable))
  const columns = Math.max(headers.length, ...rows.map((row) => row.length))
  const cell = (row: string[], i: number) => row[i] ?? ''
  const widths = Array.from({ length: columns }, (_, i) => Math.max(textWidth(cell(headers, i)), ...rows.map((row) => textWidth(cell(row, i)))))
  const line = (row: string[]) =>
    widths
      .map((width, i) => padEnd(cell(row, i), width))
      .join(GAP)
      .trimEnd()

  const dashes = widths.map((width) => '-'.repeat(width))
  return [line(headers), line(dashes), ...rows.map(line)].map((text) => text + '\n').join('')
}
