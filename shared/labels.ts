// Node labels: the rules a label must follow wherever it enters Warren (the node's config
// and --labels, the join and heartbeat APIs, the tunnel's hello). Keys use Teleport's
// alphabet, so that labels copied from a Teleport setup keep working; values are printable
// text, since they end up on an administrator's terminal in `warrenctl nodes ls`.

import { UsageError } from './errors.ts'
import { isPrintable, printable } from './printable.ts'

/** Teleport's label key alphabet (types.IsValidLabelKey). */
const LABEL_KEY = /^[a-zA-Z0-9/._:*-]+$/

export const LABEL_LIMITS = {
  /** Labels on one node: a heartbeat stays a small message. */
  maxLabels: 64,
  /** Room for prefixed keys such as `topology.kubernetes.io/zone`. */
  maxKeyLength: 128,
  maxValueLength: 256,
} as const

export class LabelError extends Error {}

/** What is wrong with a label key, or undefined when it is valid. */
export function labelKeyProblem(key: string): string | undefined {
  if (key.length > LABEL_LIMITS.maxKeyLength) return `is longer than ${LABEL_LIMITS.maxKeyLength} characters`
  if (!LABEL_KEY.test(key)) return 'is not a valid label name (letters, digits and / . _ : * -)'
  return undefined
}

/** What is wrong with a label value, or undefined when it is valid. */
export function labelValueProblem(value: string): string | undefined {
  if (value.length > LABEL_LIMITS.maxValueLength) return `is longer than ${LABEL_LIMITS.maxValueLength} characters`
  if (!isPrintable(value)) return 'holds a control character; label values must be printable text'
  return undefined
}

/**
 * `value` as labels, or a LabelError naming the first offending label. A bad key is quoted
 * with its unprintable characters escaped, so that the message is safe to log or print.
 */
export function checkLabels(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new LabelError('labels must be an object of strings')
  const entries = Object.entries(value)
  if (entries.length > LABEL_LIMITS.maxLabels) throw new LabelError(`at most ${LABEL_LIMITS.maxLabels} labels are allowed, not ${entries.length}`)
  for (const [key, item] of entries) {
    const keyProblem = labelKeyProblem(key)
    if (keyProblem) throw new LabelError(`label "${printable(key.slice(0, LABEL_LIMITS.maxKeyLength))}" ${keyProblem}`)
    if (typeof item !== 'string') throw new LabelError(`label "${key}" must have a string value`)
    const valueProblem = labelValueProblem(item)
    if (valueProblem) throw new LabelError(`label "${key}" ${valueProblem}`)
  }
  return Object.fromEntries(entries) as Record<string, string>
}

/** `value` as labels when it follows the rules, else undefined. */
export function validLabels(value: unknown): Record<string, string> | undefined {
  try {
    return checkLabels(value)
  } catch (error) {
    if (error instanceof LabelError) return undefined
    throw error
  }
}

/** `distro=ubuntu,env=prod` (a --labels flag) → `{ distro: 'ubuntu', env: 'prod' }`. */
export function parseLabels(text: string): Record<string, string> {
  // No prototype: a label named __proto__ is a label like any other.
  const labels: Record<string, string> = Object.create(null)
  for (const item of text.split(',')) {
    if (item.trim() === '') continue
    const eq = item.indexOf('=')
    const key = eq === -1 ? '' : item.slice(0, eq).trim()
    if (!LABEL_KEY.test(key)) {
      throw new UsageError(`invalid label ${JSON.stringify(item.trim())}: use key=value, e.g. env=prod`)
    }
    // One value per key: `env=prod,env=lab` (or --labels given twice) has no meaning to pick.
    if (Object.hasOwn(labels, key)) throw new UsageError(`label ${JSON.stringify(key)} is given more than once in --labels: give each key once`)
    labels[key] = item.slice(eq + 1).trim()
  }
  return checkFlagLabels(labels)
}

/** Labels from the command line (alone, or merged over the file's): a problem is bad usage. */
export function checkFlagLabels(labels: Record<string, string>): Record<string, string> {
  try {
    return checkLabels(labels)
  } catch (error) {
    if (error instanceof LabelError) throw new UsageError(`--labels: ${error.message}`)
    throw error
  }
}
