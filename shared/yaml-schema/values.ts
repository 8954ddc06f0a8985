// The rules for values: scalars (strings, booleans, counts, one of a few words, durations),
// lists and maps of them.

import { isMap, isScalar, isSeq } from 'yaml'
import { parseDuration, shortDuration } from '../duration.ts'
import { UsageError } from '../errors.ts'
import { childPath, fail, isEmpty, keyText, pairsOf, positioned, type Rule, resolved, sectionBlame } from './document.ts'

/** What a value's check says is wrong with it (after its name), or undefined. */
export type Check = (value: string) => string | undefined

/** How a scalar's reader complains: `wrong()` says what the value must be, `refuse` anything else. */
interface Complaints {
  /** The key's path, quoted, to start a message with. */
  name: string
  wrong(): never
  refuse(message: string): never
}

function scalar<T>(expects: string, accept: (value: unknown, complaints: Complaints) => T): Rule<T> {
  return {
    expects,
    read(reading, node, path, at) {
      const blame = positioned(node) ? node : at
      const target = resolved(reading, node)
      const name = JSON.stringify(path)
      if (isEmpty(target)) fail(reading, blame, `${name} has no value`)
      if (!isScalar(target)) fail(reading, blame, `${name} ${expects}`)
      const refuse = (message: string) => fail(reading, blame, message)
      return accept(target.value, { name, wrong: () => refuse(`${name} ${expects}`), refuse })
    },
  }
}

export function string(check?: Check): Rule<string> {
  return scalar('must be a string', (value, { name, wrong, refuse }) => {
    if (typeof value !== 'string') return wrong()
    const problem = check?.(value)
    if (problem) return refuse(`${name} ${problem}`)
    return value
  })
}

/** A check from a parser that throws UsageError: `is not valid: <its message>`. */
export function checkWith(parse: (value: string) => unknown): Check {
  return (value) => {
    try {
      parse(value)
      return undefined
    } catch (err) {
      if (err instanceof UsageError) return `is not valid: ${err.message}`
      throw err
    }
  }
}

export const boolean: Rule<boolean> = scalar('must be true or false', (value, { wrong }) => {
  if (typeof value !== 'boolean') return wrong()
  return value
})

/** A whole number above zero. */
export const count: Rule<number> = scalar('must be a whole number above zero', (value, { wrong }) => {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) return wrong()
  return value
})

export function oneOf<const V extends readonly string[]>(...values: V): Rule<V[number]> {
  return scalar(`must be one of ${values.join(', ')}`, (value, { wrong }) => {
    if (typeof value !== 'string' || !values.includes(value)) return wrong()
    return value
  })
}

/** The bounds of a duration, in milliseconds, and what makes them so (said after the bound in an error). */
export interface DurationBounds {
  min?: number
  max?: number
  minReason?: string
  maxReason?: string
}

/** A duration with a unit (`30s`, `1h30m`), read as milliseconds, within `bounds` (`min` alone: a number). */
export function duration(bounds: DurationBounds | number = {}): Rule<number> {
  const { min, max, minReason, maxReason }: DurationBounds = typeof bounds === 'number' ? { min: bounds } : bounds
  const because = (reason?: string) => (reason ? ` (${reason})` : '')
  return scalar('must be a duration with a unit, e.g. 30s, 5m, 1h', (value, { name, wrong, refuse }) => {
    if (typeof value !== 'string') return wrong()
    let ms: number
    try {
      ms = parseDuration(value, name)
    } catch (err) {
      if (err instanceof UsageError) return refuse(err.message)
      throw err
    }
    if (min !== undefined && ms < min) return refuse(`${name} is ${value}: it must be at least ${shortDuration(min)}${because(minReason)}`)
    if (max !== undefined && ms > max) return refuse(`${name} is ${value}: it must be at most ${shortDuration(max)}${because(maxReason)}`)
    return ms
  })
}

/** The value of `rule`, turned into another by `convert` (which must not fail). */
export function converted<T, U>(rule: Rule<T>, convert: (value: T) => U): Rule<U> {
  return { expects: rule.expects, read: (...args) => convert(rule.read(...args)) }
}

export interface ListOptions<T> {
  /** A single value is accepted as a list of one (`ca_pin: sha256:...`). */
  single?: boolean
  /** The fewest items that make sense: fewer (an empty list, too) are refused. */
  min?: number
  /** The most items that mean something: more are refused, not ignored. */
  max?: number
  /** A field that no two items may share. */
  uniqueBy?: keyof T & string
}

/** A list; nothing written after the key is an empty list. */
export function list<T>(item: Rule<T>, options: ListOptions<T> = {}): Rule<T[]> {
  return {
    expects: 'must be a list',
    read(reading, node, path, at) {
      const blame = positioned(node) ? node : at
      const target = resolved(reading, node)
      const name = JSON.stringify(path)
      const tooFew = (count: number) => {
        if (options.min !== undefined && count < options.min) {
          fail(reading, blame, `${name} has ${count === 0 ? 'no' : count} ${count === 1 ? 'entry' : 'entries'}; at least ${options.min} ${options.min === 1 ? 'is' : 'are'} needed`)
        }
      }
      if (isEmpty(target)) {
        tooFew(0)
        return []
      }
      if (options.single && isScalar(target)) return [item.read(reading, target, path, blame)]
      if (!isSeq(target)) fail(reading, blame, `${name} must be a list`)
      tooFew(target.items.length)
      if (options.max !== undefined && target.items.length > options.max) {
        fail(reading, positioned(at) ? at : blame, `${name} has ${target.items.length} entries; at most ${options.max} ${options.max === 1 ? 'is' : 'are'} allowed`)
      }
      const items = target.items.map((child, i) => item.read(reading, child, `${path}[${i}]`, positioned(child) ? child : blame))
      const unique = options.uniqueBy
      if (unique) {
        const seen = new Set<unknown>()
        items.forEach((value, i) => {
          const field = value[unique]
          if (seen.has(field)) fail(reading, target.items[i], `${name} has "${unique}: ${field}" twice`)
          seen.add(field)
        })
      }
      return items
    },
  }
}

export interface MapOptions {
  checkKey?: Check
  maxKeys?: number
}

/** Keys the file chooses (labels), each value read by `value`. */
export function map<T>(value: Rule<T>, options: MapOptions = {}): Rule<Record<string, T>> {
  return {
    expects: 'must be a section of keys',
    read(reading, node, path, at) {
      const pairs = pairsOf(reading, node, path, at)
      const out: Record<string, T> = {}
      if (options.maxKeys !== undefined && pairs.length > options.maxKeys) {
        fail(reading, sectionBlame(node, at), `${JSON.stringify(path)} has ${pairs.length} entries; at most ${options.maxKeys} are allowed`)
      }
      for (const pair of pairs) {
        const text = keyText(reading, pair, path, node, at)
        const keyPath = childPath(path, text)
        const problem = options.checkKey?.(text)
        if (problem) fail(reading, pair.key, `${JSON.stringify(keyPath)} ${problem}`)
        out[text] = value.read(reading, pair.value, keyPath, pair.key)
      }
      return out
    },
  }
}

/** A short form and a long one: a section of keys is read by `long`, anything else by `short`. */
export function shortOrLong<A, B>(short: Rule<A>, long: Rule<B>): Rule<A | B> {
  const expects = `${short.expects}, or a section of keys`
  return {
    expects,
    read(reading, node, path, at) {
      const target = resolved(reading, node)
      if (isMap(target)) return long.read(reading, node, path, at)
      // Neither form (a number, a list): say both, not only what the short one wanted.
      if (!isEmpty(target) && !(isScalar(target) && typeof target.value === 'string')) {
        fail(reading, positioned(node) ? node : at, `${JSON.stringify(path)} ${expects}`)
      }
      return short.read(reading, node, path, at)
    },
  }
}
