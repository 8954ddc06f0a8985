// Label selectors, as `warren ls`, `warren ssh LOGIN@SELECTOR` and `warrenctl nodes ls`
// take them: `key=value` or `key=*` (any value, but the label must be there), several
// joined by `,` or given as separate operands; a node is selected when every one matches.
// Keys and values follow the rules of node labels (labels.ts), so a selector that could
// never match a label is refused as it is typed, not silently left matching nothing.

import { UsageError } from './errors.ts'
import { LABEL_LIMITS, labelKeyProblem, labelValueProblem } from './labels.ts'
import { printable } from './printable.ts'

/** One `key=value` (value `*`: any value). */
export interface Selector {
  key: string
  value: string
}

export const ANY_VALUE = '*'

/**
 * The selectors of `operands` (each `k=v` or `k=v,k2=v2`): a UsageError names the first one
 * that is not `key=value` or whose key or value no label could have.
 */
export function parseSelectors(operands: readonly string[]): Selector[] {
  const selectors: Selector[] = []
  for (const operand of operands) {
    for (const item of operand.split(',')) {
      const text = item.trim()
      if (text === '') throw new UsageError(`empty selector in "${printable(operand)}": use key=value, e.g. env=prod`)
      const eq = text.indexOf('=')
      if (eq <= 0) throw new UsageError(`invalid selector "${printable(text)}": use key=value or key=*, e.g. env=prod`)
      const key = text.slice(0, eq)
      const value = text.slice(eq + 1)
      const keyProblem = key === ANY_VALUE ? 'is not a label name (use key=* for any value of a label)' : labelKeyProblem(key)
      if (keyProblem) throw new UsageError(`invalid selector "${printable(text.slice(0, LABEL_LIMITS.maxKeyLength))}": the key ${keyProblem}`)
      const valueProblem = labelValueProblem(value)
      if (valueProblem) throw new UsageError(`invalid selector "${printable(text.slice(0, LABEL_LIMITS.maxKeyLength))}": the value ${valueProblem}`)
      selectors.push({ key, value })
    }
  }
  return selectors
}

/** Whether a selector names nodes: a host part with `=` (`root@env=lab`), never a node name. */
export function isSelector(text: string): boolean {
  return text.includes('=')
}

/**
 * Whether `labels` satisfy every selector. A label may have several values (a token's
 * roles): it matches when one of them does. No selectors select everything.
 */
export function matchesSelectors(selectors: readonly Selector[], labels: Readonly<Record<string, string | readonly string[]>>): boolean {
  return selectors.every(({ key, value }) => {
    if (!Object.hasOwn(labels, key)) return false
    const values = labels[key]
    const list = typeof values === 'string' ? [values] : values
    return value === ANY_VALUE ? list.length > 0 : list.includes(value)
  })
}

/** Labels as `k=v` comma-joined, sorted by key: how every list shows them. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .sort()
    .map((key) => `${key}=${labels[key]}`)
    .join(',')
}
