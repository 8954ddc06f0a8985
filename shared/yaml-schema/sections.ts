// Keys and sections: a section maps each key the file may write to the name the code reads
// it by, its rule, its default and what it is for; the type it reads is derived from that.

import { isScalar, type Pair } from 'yaml'
import { childPath, type DeclaredKey, fail, isSection, keyText, pairsOf, type Reading, type Rule, type SectionRule, sectionBlame, sectionName, unknownKey } from './document.ts'
import { oneOf } from './values.ts'

/**
 * What a default computed from other keys sees: the whole config as read (typed by the
 * schema that uses it), the section the key belongs to, and whether that section was
 * written in the file. Computed defaults run once everything written is read, from the top
 * level down: one may read the computed defaults of the levels above its own.
 */
export interface Scope {
  // biome-ignore lint/suspicious/noExplicitAny: the schema that uses the scope gives it its type
  readonly config: any
  // biome-ignore lint/suspicious/noExplicitAny: as for config
  readonly section: any
  readonly written: boolean
}

/** 'always': what is read has the key; 'maybe': only when written; 'never': checked, then dropped. */
type Presence = 'always' | 'maybe' | 'never'

export interface Key<T, P extends Presence = Presence> extends DeclaredKey {
  readonly rule: Rule<T>
  readonly fallback?: T | ((scope: Scope) => T | undefined)
  readonly required: boolean
  /** False for a marker: its value is checked, then left out of what is read. */
  readonly kept: boolean
  /** For a section: left out of what is read when the file leaves it out. */
  readonly optional: boolean
  /** Never set: carries the presence into the type that the schema reads. */
  readonly presence?: P
}

/** A section that is left out when the file leaves it out (rather than built from defaults). */
export function key<T>(name: string, rule: SectionRule<T>, options: { doc: string; optional: true }): Key<T, 'maybe'>
/** A section: when the file leaves it out, every key in it takes its default. */
export function key<T>(name: string, rule: SectionRule<T>, options: { doc: string }): Key<T, 'always'>
export function key<T>(name: string, rule: Rule<T>, options: { doc: string; default: NoInfer<T> | ((scope: Scope) => NoInfer<T>) }): Key<T, 'always'>
export function key<T>(name: string, rule: Rule<T>, options: { doc: string; required: true }): Key<T, 'always'>
export function key<T>(name: string, rule: Rule<T>, options: { doc: string; default?: (scope: Scope) => NoInfer<T> | undefined }): Key<T, 'maybe'>
export function key<T>(name: string, rule: Rule<T>, options: { doc: string; default?: T | ((scope: Scope) => T | undefined); required?: true; optional?: true }): Key<T> {
  return { name, rule, doc: options.doc, fallback: options.default, required: options.required === true, kept: true, optional: options.optional === true }
}

/** A key that is checked (a format version, say) but has no value in what is read. */
export function marker<T>(name: string, rule: Rule<T>, doc: string): Key<T, 'never'> {
  return { name, rule, doc, required: false, kept: false, optional: true }
}

// biome-ignore lint/suspicious/noExplicitAny: a key of any value type; Built<F> recovers each one's type
export type Fields = Record<string, Key<any>>

type Simplify<T> = { [K in keyof T]: T[K] } & {}
type ValueOf<K> = K extends Key<infer T, Presence> ? T : never
type PresenceOf<K> = K extends Key<unknown, infer P> ? P : never

/** What a section with `fields` reads: its keys named as in code, optional where they may be absent. */
export type Built<F extends Fields> = Simplify<
  { -readonly [K in keyof F as PresenceOf<F[K]> extends 'always' ? K : never]: ValueOf<F[K]> } & {
    -readonly [K in keyof F as PresenceOf<F[K]> extends 'maybe' ? K : never]?: ValueOf<F[K]>
  }
>

export interface SectionOptions {
  /** Keys that once meant something, each with why it is refused now and what to do instead. */
  retired?: Record<string, string>
  /** For the document's top level: a key to show when the file is not a map at all. */
  example?: string
}

export function section<const F extends Fields>(fields: F, options: SectionOptions = {}): SectionRule<Built<F>> {
  const names = Object.values(fields).map((field) => field.name)
  const unknown = (reading: Reading, pair: Pair, text: string, path: string): never => {
    const retired = options.retired?.[text]
    if (retired) fail(reading, pair.key, `unknown key ${JSON.stringify(text)} in section ${sectionName(path)}: ${retired}`)
    fail(reading, pair.key, unknownKey(text, path, names))
  }
  return {
    expects: 'must be a section of keys',
    keys: Object.values(fields),
    read(reading, node, path, at) {
      const notMap = path === '' && options.example ? `the config must be a map of keys such as "${options.example}:"` : undefined
      const pairs = pairsOf(reading, node, path, at, notMap)
      const place = { path, blame: sectionBlame(node, at), written: true }
      return readFields(reading, fields, pairs, place, unknown, (name) => `${JSON.stringify(path)} needs "${name}"`) as Built<F>
    },
    absent(reading, path) {
      const place = { path, blame: undefined, written: false }
      return readFields(reading, fields, [], place, unknown, (name) => `${JSON.stringify(path)} needs "${name}"`) as Built<F>
    },
  }
}

type Variant<V extends Record<string, Fields>> = { [T in keyof V]: Simplify<{ type: T } & Built<V[T]>> }[keyof V]

/**
 * A section whose `type` key chooses which other keys it takes (storage: sqlite or etcd). A
 * key of another type is refused by naming the type it belongs to.
 */
export function variants<const V extends Record<string, Fields>>(noun: string, byDefault: keyof V & string, shapes: V, doc: string): SectionRule<Variant<V>> {
  const types = Object.keys(shapes)
  const tag = key('type', oneOf(...types), { default: byDefault, doc })
  const keys = [tag, ...types.flatMap((type) => Object.values(shapes[type]))].filter((declared, i, all) => all.findIndex((other) => other.name === declared.name) === i)
  const names = keys.map((declared) => declared.name)
  const readAs = (reading: Reading, type: string, pairs: readonly Pair[], place: Place) => {
    const unknown = (reading: Reading, pair: Pair, text: string, path: string): never => {
      const owner = types.find((other) => Object.values(shapes[other]).some((field) => field.name === text))
      if (owner) fail(reading, pair.key, `${JSON.stringify(childPath(path, text))} applies only to ${owner} ${noun}`)
      fail(reading, pair.key, unknownKey(text, path, names))
    }
    const needs = (name: string) => `${JSON.stringify(place.path)} needs "${name}" for ${type} ${noun}`
    return readFields(reading, { type: tag, ...shapes[type] }, pairs, place, unknown, needs) as Variant<V>
  }
  return {
    expects: 'must be a section of keys',
    keys,
    read(reading, node, path, at) {
      const pairs = pairsOf(reading, node, path, at)
      const typePair = pairs.find((pair) => isScalar(pair.key) && pair.key.value === 'type')
      const type = typePair ? tag.rule.read(reading, typePair.value, childPath(path, 'type'), typePair.key) : byDefault
      return readAs(reading, type, pairs, { path, blame: sectionBlame(node, at), written: true })
    },
    absent(reading, path) {
      return readAs(reading, byDefault, [], { path, blame: undefined, written: false })
    },
  }
}

interface Place {
  path: string
  /** Blamed for what is missing from the section. */
  blame: unknown
  written: boolean
}

type Unknown = (reading: Reading, pair: Pair, text: string, path: string) => never

/** The written pairs read by their keys (in the file's order), then the keys left out. */
function readFields(reading: Reading, fields: Fields, pairs: readonly Pair[], place: Place, unknown: Unknown, needs: (name: string) => string): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const byName = new Map(Object.entries(fields).map(([field, declared]) => [declared.name, { field, declared }]))
  const written = new Set<string>()
  for (const pair of pairs) {
    const text = keyText(reading, pair, place.path, undefined, place.blame)
    const entry = byName.get(text)
    if (!entry) unknown(reading, pair, text, place.path)
    const value = entry.declared.rule.read(reading, pair.value, childPath(place.path, text), pair.key)
    written.add(entry.field)
    if (entry.declared.kept && value !== undefined) out[entry.field] = value
  }
  for (const [field, declared] of Object.entries(fields)) {
    if (written.has(field) || !declared.kept) continue
    if (declared.required) fail(reading, place.blame, needs(declared.name))
    const fallback = declared.fallback
    if (typeof fallback === 'function') {
      const depth = place.path === '' ? 1 : place.path.split('.').length + 1
      reading.later.push({
        depth,
        compute(config) {
          const value = fallback({ config, section: out, written: place.written })
          if (value !== undefined) out[field] = value
        },
      })
    } else if (fallback !== undefined) {
      out[field] = structuredClone(fallback)
    } else if (!declared.optional && isSection(declared.rule)) {
      out[field] = declared.rule.absent(reading, childPath(place.path, declared.name))
    }
  }
  return out
}
