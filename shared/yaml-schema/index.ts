// Reads a YAML document against a schema built from small typed rules (string, duration,
// list, section, ...). The TypeScript type of what a schema reads is derived from it, so a
// key is declared once: its name in the file, its rule, its default and what it is for.
// Every mistake in a file is reported with the key's path and line, never with the file's
// text (which may hold a secret). The parts:
//
//   document.ts  the Rule interface, reading a document, node positions and messages
//   values.ts    scalars (string, boolean, count, oneOf, duration), lists and maps
//   sections.ts  keys with their defaults, sections, and sections whose `type` picks their keys
//
// Usage:
//   const schema = section({ dataDir: key('data_dir', string(), { default: '/var/lib/x', doc: '...' }) })
//   type Config = Infer<typeof schema>          // { dataDir: string }
//   const config = readDocument(schema, text, '/etc/x.yaml')

export { type DeclaredKey, type Infer, type Reading, type Rule, readDefaults, readDocument, type SectionRule } from './document.ts'
export { type Built, type Fields, type Key, key, marker, type Scope, type SectionOptions, section, variants } from './sections.ts'
export {
  boolean,
  type Check,
  checkWith,
  converted,
  count,
  type DurationBounds,
  duration,
  type ListOptions,
  list,
  type MapOptions,
  map,
  oneOf,
  shortOrLong,
  string,
} from './values.ts'
