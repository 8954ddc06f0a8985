import t from 'tap'
import { ConfigError } from '../errors.ts'
import { boolean, converted, count, duration, type Infer, key, list, map, marker, oneOf, readDefaults, readDocument, section, string, variants } from './index.ts'

const schema = section(
  {
    format: marker('format', oneOf('f1'), 'the format of the file'),
    name: key('name', string(), { default: () => 'host', doc: 'a name' }),
    home: key('home', string(), { default: '/home', doc: 'a directory' }),
    note: key('note', string(), { doc: 'optional text' }),
    tags: key('tags', map(string()), { default: {}, doc: 'free-form tags' }),
    server: key(
      'server',
      section({
        on: key('on', boolean, { default: ({ written }) => written, doc: 'on when the section is written' }),
        title: key('title', string(), { default: ({ config }) => `${config.name} server`, doc: 'after the name' }),
        every: key('every', duration(1000), { default: 60_000, doc: 'an interval' }),
        peers: key('peers', list(string(), { single: true, max: 2 }), { default: [], doc: 'at most two' }),
        first: key(
          'first',
          converted(list(string(), { single: true }), (items) => items[0]),
          { doc: 'the first of a list' },
        ),
      }),
      { doc: 'a role' },
    ),
    extra: key('extra', section({ level: key('level', count, { default: 1, doc: 'a count' }) }), { optional: true, doc: 'left out unless written' }),
    items: key(
      'items',
      list(
        section({
          id: key('id', string(), { required: true, doc: 'each item names itself' }),
        }),
        { uniqueBy: 'id' },
      ),
      { default: [], doc: 'a list of sections' },
    ),
    store: key(
      'store',
      variants(
        'store',
        'file',
        {
          file: { path: key('path', string(), { default: ({ config }) => `${config.home}/data`, doc: 'under home' }) },
          net: { url: key('url', string(), { required: true, doc: 'where' }) },
        },
        'the kind of store',
      ),
      { doc: 'a choice' },
    ),
  },
  { retired: { old: 'it did nothing; remove it' }, example: 'server' },
)

type Read = Infer<typeof schema>

function errorOf(text: string): string {
  try {
    readDocument(schema, text, 'x.yaml')
  } catch (error) {
    t.type(error, ConfigError)
    return (error as Error).message
  }
  return 'read without error'
}

t.test('the type read is derived from the schema', async (t) => {
  const read: Read = readDefaults(schema)
  // Keys with a default are always there; others only when written; a marker never.
  const name: string = read.name
  const note: string | undefined = read.note
  const first: string | undefined = read.server.first
  // @ts-expect-error a marker is checked, not kept
  t.equal(read.format, undefined)
  const store: { type: 'file'; path: string } | { type: 'net'; url: string } = read.store
  t.same({ name, note, first, store }, { name: 'host', note: undefined, first: undefined, store: { type: 'file', path: '/home/data' } })
})

t.test('defaults: values, computed ones after what is written, sections built unless optional', async (t) => {
  t.same(readDefaults(schema), {
    name: 'host',
    home: '/home',
    tags: {},
    server: { on: false, title: 'host server', every: 60_000, peers: [] },
    items: [],
    store: { type: 'file', path: '/home/data' },
  })
  // The server section comes first in the file, yet its title follows the name written after it.
  const read = readDocument(schema, 'server:\nname: pi\nhome: /srv\n', 'x.yaml')
  t.same(read.server, { on: true, title: 'pi server', every: 60_000, peers: [] }, 'a written section is on')
  t.same(read.store, { type: 'file', path: '/srv/data' })
  const first = readDefaults(schema)
  first.tags.k = 'v'
  first.server.peers.push('p')
  t.same([readDefaults(schema).tags, readDefaults(schema).server.peers], [{}, []], 'a default value is never shared')
})

t.test('written values', async (t) => {
  const read = readDocument(
    schema,
    [
      'format: f1',
      'note: hello',
      'tags: { a: b }',
      'server: { on: false, every: 90s, peers: p1, first: [x, y] }',
      'extra: { level: 3 }',
      'items: [{ id: one }, { id: two }]',
      'store: { type: net, url: "https://db" }',
    ].join('\n'),
    'x.yaml',
  )
  t.same(read, {
    name: 'host',
    home: '/home',
    note: 'hello',
    tags: { a: 'b' },
    server: { on: false, title: 'host server', every: 90_000, peers: ['p1'], first: 'x' },
    extra: { level: 3 },
    items: [{ id: 'one' }, { id: 'two' }],
    store: { type: 'net', url: 'https://db' },
  })
})

t.test('mistakes are named with their key and line', async (t) => {
  t.equal(errorOf('format: f2\n'), 'x.yaml: line 1: "format" must be one of f1')
  t.equal(errorOf('name: a\nold: 1\n'), 'x.yaml: line 2: unknown key "old" in section "(top level)": it did nothing; remove it')
  t.equal(errorOf('nam: a\n'), 'x.yaml: line 1: unknown key "nam" in section "(top level)" (did you mean "name"?)')
  t.equal(errorOf('server:\n  peers: [a, b, c]\n'), 'x.yaml: line 2: "server.peers" has 3 entries; at most 2 are allowed')
  t.equal(errorOf('server:\n  every: 10ms\n'), 'x.yaml: line 2: "server.every" is 10ms: it must be at least 1s')
  t.equal(errorOf('server:\n  on: 1\n'), 'x.yaml: line 2: "server.on" must be true or false')
  t.equal(errorOf('extra: { level: 0 }\n'), 'x.yaml: line 1: "extra.level" must be a whole number above zero')
  t.equal(errorOf('items:\n  - { id: a }\n  - {}\n'), 'x.yaml: line 3: "items[1]" needs "id"')
  t.equal(errorOf('items:\n  - { id: a }\n  - { id: a }\n'), 'x.yaml: line 3: "items" has "id: a" twice')
  t.equal(errorOf('store:\n  type: net\n'), 'x.yaml: line 1: "store" needs "url" for net store')
  t.equal(errorOf('store:\n  url: x\n'), 'x.yaml: line 2: "store.url" applies only to net store')
  t.equal(errorOf('store:\n  type: disk\n'), 'x.yaml: line 2: "store.type" must be one of file, net')
  t.equal(errorOf('- a\n'), 'x.yaml: line 1: the config must be a map of keys such as "server:"')
  t.equal(errorOf('note:\n'), 'x.yaml: line 1: "note" has no value')
})
