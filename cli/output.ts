// Lists as a person reads them or as a program does: `--format=text` is a table (table.ts),
// `json` and `yaml` every field of every item, with the keys the API answers, in its order,
// so that scripts can rely on them. An empty list is `[]` in json and yaml, and a sentence
// in text.

import { stringify } from 'yaml'
import type { FlagDef } from './flags.ts'
import { formatTable } from './table.ts'

export const FORMATS = ['text', 'json', 'yaml'] as const
export type Format = (typeof FORMATS)[number]

export const FORMAT_FLAG = {
  type: 'enum',
  values: FORMATS,
  default: 'text',
  description: 'text (a table), or json or yaml with every field',
} as const satisfies FlagDef

export interface ListView<T> {
  headers: string[]
  row(item: T): string[]
  /** What text says when there is nothing to list. */
  empty: string
}

/** The items with every field, for programs. */
export function formatData(items: readonly unknown[], format: 'json' | 'yaml'): string {
  return format === 'json' ? JSON.stringify(items, null, 2) + '\n' : stringify(items)
}

/** The items as `format` shows them, ending in a newline. */
export function formatList<T>(items: readonly T[], format: Format, view: ListView<T>): string {
  if (format !== 'text') return formatData(items, format)
  if (items.length === 0) return view.empty + '\n'
  return formatTable(view.headers, items.map(view.row))
}
