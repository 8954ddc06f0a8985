// The reading of a YAML document: the rule interface every value's reader implements, the
// positions of nodes (for the line in a message), and the messages themselves.

import { type Document, isAlias, isMap, isScalar, LineCounter, type Pair, parseDocument } from 'yaml'
import { ConfigError } from '../errors.ts'
import { closest } from '../suggest.ts'

/** The document being read, and the defaults that wait for the rest of it (see Scope). */
export interface Reading {
  readonly source: string
  readonly doc?: Document
  readonly lines?: LineCounter
  readonly later: Computed[]
}

/** A default computed from the config once it is read; `depth` is its key's nesting. */
export interface Computed {
  depth: number
  compute(root: object): void
}

export interface Rule<T> {
  /** What a value must be, after its name: `must be a string`. */
  readonly expects: string
  /**
   * The value `node` holds (a YAML node; null or an empty scalar when nothing is written
   * after the key). `at` is the node that introduces it (its key, or the list item itself):
   * blamed for a section's problems, and for a value's when the value has no position.
   */
  read(reading: Reading, node: unknown, path: string, at: unknown): T
}

/** A rule for a map of keys, which also knows its value when the file leaves it out. */
export interface SectionRule<T> extends Rule<T> {
  absent(reading: Reading, path: string): T
  /** The keys it takes, for whoever goes through a schema key by key. */
  readonly keys: readonly DeclaredKey[]
}

export interface DeclaredKey {
  /** The key as the file writes it. */
  readonly name: string
  readonly rule: Rule<unknown>
  /** What the key does, for the people who write the file. */
  readonly doc: string
}

export type Infer<R> = R extends Rule<infer T> ? T : never

/** `text` read against `schema`; `source` names the file in every error. */
export function readDocument<T>(schema: SectionRule<T>, text: string, source: string): T {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines })
  const problem = doc.errors[0]
  if (problem) {
    // Only the first line of the parser's message: the rest quotes the file, which may hold a token.
    const line = problem.linePos?.[0].line
    const summary =
      problem.code === 'MULTIPLE_DOCS' ? 'the file holds more than one document (a second "---")' : problem.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    throw new ConfigError(`${source}:${line === undefined ? '' : ` line ${line}:`} invalid YAML: ${summary}`)
  }
  const reading: Reading = { source, doc, lines, later: [] }
  return finish(reading, schema.read(reading, doc.contents, '', doc.contents))
}

/** What `schema` reads from a document that writes nothing: every default. */
export function readDefaults<T>(schema: SectionRule<T>): T {
  const reading: Reading = { source: '(defaults)', later: [] }
  return finish(reading, schema.absent(reading, ''))
}

/** Computed defaults from the top level down, so a key's may read those of the levels above. */
function finish<T>(reading: Reading, root: T): T {
  const byDepth = [...reading.later].sort((a, b) => a.depth - b.depth)
  for (const computed of byDepth) computed.compute(root as object)
  return root
}

// ---------------------------------------------------------------------------------------
// Nodes, positions and messages

interface Located {
  range?: [number, number, number] | null
}

export function positioned(node: unknown): boolean {
  return Boolean((node as Located | null)?.range)
}

export function sectionBlame(node: unknown, at: unknown): unknown {
  return positioned(at) ? at : node
}

export function resolved(reading: Reading, node: unknown): unknown {
  return isAlias(node) && reading.doc ? node.resolve(reading.doc) : node
}

export function isEmpty(node: unknown): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null)
}

export function isSection(rule: Rule<unknown>): rule is SectionRule<unknown> {
  return typeof (rule as Partial<SectionRule<unknown>>).absent === 'function'
}

export function fail(reading: Reading, node: unknown, message: string): never {
  const offset = (node as Located | null)?.range?.[0]
  const where = offset === undefined || !reading.lines ? '' : ` line ${reading.lines.linePos(offset).line}:`
  throw new ConfigError(`${reading.source}:${where} ${message}`)
}

/** The pairs of a map node; nothing written is no pairs. */
export function pairsOf(reading: Reading, node: unknown, path: string, at: unknown, notMap?: string): readonly Pair[] {
  const target = resolved(reading, node)
  if (isEmpty(target)) return []
  if (!isMap(target)) fail(reading, positioned(node) ? node : at, notMap ?? `${JSON.stringify(path)} must be a section of keys`)
  return target.items as Pair[]
}

export function keyText(reading: Reading, pair: Pair, path: string, node: unknown, at: unknown): string {
  const key = isScalar(pair.key) ? pair.key.value : undefined
  if (typeof key !== 'string' && typeof key !== 'number') fail(reading, pair.key ?? (positioned(node) ? node : at), `keys in ${JSON.stringify(path)} must be plain words`)
  return String(key)
}

export function childPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`
}

export function sectionName(path: string): string {
  return JSON.stringify(path === '' ? '(top level)' : path)
}

export function unknownKey(key: string, path: string, known: string[]): string {
  const message = `unknown key ${JSON.stringify(key)} in section ${sectionName(path)}`
  const close = closest(key, known)
  return close ? `${message} (did you mean "${close}"?)` : message
}
