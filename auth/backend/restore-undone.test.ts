// What a restore says it undoes, from two backends made here record by record: what came
// and went both ways, and nothing said of what a restore does not change (a user from
// before generations given one, a token or lock that has ended by now, labels written
// again unchanged).

import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { undoneByRestore, undoneItems, undoneLines } from './restore-undone.ts'
import { SqliteBackend } from './sqlite.ts'

const NOW = 1_800_000_000_000
const HOUR = 3_600_000

/** A backend file holding `records` (key: value), those with a ttl ending at NOW + ttl. */
async function backendWith(records: Record<string, unknown>, ttls: Record<string, number> = {}): Promise<string> {
  const path = join(mkdtempSync(join(tmpdir(), 'warren-undone-')), 'backend.db')
  const backend = SqliteBackend.open(path, { clock: () => NOW })
  for (const [key, value] of Object.entries(records)) await backend.put(key, JSON.stringify(value), ttls[key] === undefined ? {} : { ttlMs: ttls[key] })
  backend.close()
  return path
}

const node = (hostId: string, nodename: string) => ({ [`/nodes/${hostId}`]: { hostId, nodename } })
const labels = (hostId: string, assigned: Record<string, string>, changed: number) => ({ [`/assigned-labels/${hostId}`]: { hostId, labels: assigned, changed } })
const token = (hash: string, id: string, more: Record<string, unknown> = {}) => ({ [`/tokens/${hash}`]: { id, roles: ['node'], singleUse: true, static: false, ...more } })
const lock = (id: string, user: string, more: Record<string, unknown> = {}) => ({ [`/locks/${id}`]: { id, target: { user }, created: NOW - HOUR, ...more } })

function line(lines: string[], start: string): string {
  return lines.find((text) => text.startsWith(start)) ?? ''
}

t.test('locks, tokens and assigned labels changed since are said both ways', async (t) => {
  const hosts = { ...node('h1', 'pi-1'), ...node('h2', 'pi-2'), ...node('h3', 'pi-3'), ...node('h4', 'pi-4') }
  const then = await backendWith({
    ...hosts,
    ...labels('h1', { env: 'lab' }, NOW - HOUR),
    ...labels('h3', { env: 'lab' }, NOW - HOUR),
    ...labels('h4', { env: 'lab' }, NOW - HOUR),
    ...lock('lifted', 'alice'),
    ...lock('lifted-ended', 'bob', { expires: NOW - 1 }),
    ...token('aa', 'deleted'),
    ...token('bb', 'deleted-ended', { expires: NOW - 1 }),
    ...token('cc', 'kept'),
  })
  const now = await backendWith({
    ...hosts,
    ...labels('h1', { env: 'prod' }, NOW),
    ...labels('h2', { site: 'berlin' }, NOW),
    ...labels('h3', { env: 'lab' }, NOW),
    ...lock('made', 'carol'),
    ...token('cc', 'kept'),
    ...token('dd', 'made'),
    ...token('ee', 'made-ended', { expires: NOW - 1 }),
    ...token('ff', 'invitation', { user: 'dave', roles: ['signup'] }),
  })
  const lines = undoneByRestore(now, then, NOW)
  t.equal(line(lines, 'locks lifted since are back'), 'locks lifted since are back (warrenctl lock rm ID): user alice (lifted)', 'not one that has ended by now')
  t.equal(line(lines, 'locks made since are gone'), 'locks made since are gone (warrenctl lock): user carol')
  t.equal(
    line(lines, 'tokens used up or deleted since'),
    'tokens used up or deleted since are valid again until they expire (warrenctl tokens rm ID): deleted',
    'not one that has expired by now',
  )
  t.equal(
    line(lines, 'tokens made since are gone'),
    'tokens made since are gone (warrenctl tokens add, or warrenctl nodes add for a node): made',
    "not one expired, nor a user's invitation",
  )
  t.equal(
    line(lines, 'hosts whose assigned labels changed since'),
    'hosts whose assigned labels changed since have their earlier ones again (warrenctl nodes label NAME KEY=VALUE --remove=KEY): pi-1, pi-2, pi-4',
    'changed, assigned and removed; not those written again unchanged',
  )
})

t.test('records that end by their time to live in the backend count as gone', async (t) => {
  const then = await backendWith({ ...token('aa', 'swept') }, { '/tokens/aa': HOUR })
  const now = await backendWith({})
  t.same(undoneByRestore(now, then, NOW), ['tokens used up or deleted since are valid again until they expire (warrenctl tokens rm ID): swept'])
  t.same(undoneByRestore(now, then, NOW + HOUR), [], 'an hour later it has ended either way')
})

t.test('a user is reset by its credentials, and by its generation only when both records have one', async (t) => {
  const user = (name: string, generation?: string) => ({ [`/users/${name}`]: { name, logins: ['root'], roles: [], created: 1, ...(generation ? { generation } : {}) } })
  const credentials = (name: string, password: string) => ({ [`/credentials/${name}`]: { password } })
  const then = await backendWith({
    ...user('older'),
    ...credentials('older', 'p1'),
    ...user('older-reset'),
    ...credentials('older-reset', 'p1'),
    ...user('reset', 'g1'),
    ...credentials('reset', 'p1'),
    ...user('same', 'g1'),
    ...credentials('same', 'p1'),
  })
  const now = await backendWith({
    ...user('older', 'g2'),
    ...credentials('older', 'p1'),
    ...user('older-reset', 'g2'),
    ...user('reset', 'g2'),
    ...credentials('reset', 'p1'),
    ...user('same', 'g1'),
    ...credentials('same', 'p1'),
  })
  t.same(undoneByRestore(now, then, NOW), [
    'users reset or signed up since have their earlier password, TOTP and certificates again (warrenctl users reset NAME): older-reset, reset',
  ])
})

t.test('each item is a record with the command that makes it again, ready for a shell', async (t) => {
  const user = (name: string, logins: string[], roles: string[]) => ({ [`/users/${name}`]: { name, logins, roles, created: 1 } })
  const then = await backendWith({
    ...node('h1', 'pi-1'),
    ...node('h2', 'pi-2'),
    ...labels('h1', { env: 'lab', site: 'berlin' }, NOW - HOUR),
    ...{ '/roles/gone-since': { name: 'gone-since' }, '/roles/edited': { name: 'edited', logins: ['a'] } },
    ...{ '/authorities/host': { keys: 1 }, '/authorities/user': { keys: 1 } },
  })
  const now = await backendWith(
    {
      ...node('h1', 'pi-1'),
      ...node('h2', 'pi-2'),
      ...labels('h1', { env: 'prod', owner: "o'brien" }, NOW),
      ...user('new', ['root', 'pi'], ['access', 'editor']),
      ...lock('l-node', '', { target: { node: 'pi-2', hostId: 'h2' }, expires: NOW + 90_000 }),
      ...lock('l-user', 'bob', { message: 'on leave' }),
      ...lock('l-reset', 'carol', { target: { user: 'carol', issuedBefore: NOW, generation: 'g1' } }),
      ...lock('l-logins', 'dave', { target: { user: 'dave', loginsOnly: true } }),
      ...token('aa', 'named', { nodename: 'pi-9', labels: { env: 'lab' }, expires: NOW + 30 * 60_000 }),
      ...token('cc', 'once', { expires: NOW + 5 * 60_000 }),
      ...token('bb', 'proxy', { roles: ['proxy', 'node'], singleUse: false, expires: NOW + HOUR - 500 }),
      ...{ '/roles/made-since': { name: 'made-since' }, '/roles/edited': { name: 'edited', logins: ['b'] } },
      ...{ '/authorities/host': { keys: 2 }, '/authorities/user': { keys: 1 } },
    },
    { '/locks/l-node': 90_000 },
  )
  t.same(undoneItems(now, then, NOW), [
    { kind: 'user_added', subject: 'new', id: null, command: 'warrenctl users add new --logins=root,pi --roles=access,editor' },
    { kind: 'lock_made', subject: 'node pi-2', id: 'l-node', command: 'warrenctl lock --node=h2 --ttl=1m30s' },
    { kind: 'lock_made', subject: 'user bob', id: 'l-user', command: "warrenctl lock --user=bob '--message=on leave'" },
    { kind: 'lock_made', subject: 'user carol', id: 'l-reset', command: null },
    { kind: 'lock_made', subject: 'user dave', id: 'l-logins', command: null },
    { kind: 'host_labels_changed', subject: 'pi-1', id: 'h1', command: "warrenctl nodes label h1 env=prod 'owner=o'\\''brien' --remove=site" },
    { kind: 'token_made', subject: 'named', id: null, command: 'warrenctl tokens add --type=node --ttl=30m --nodename=pi-9 --labels=env=lab' },
    { kind: 'token_made', subject: 'once', id: null, command: 'warrenctl tokens add --type=node --ttl=5m --single-use' },
    { kind: 'token_made', subject: 'proxy', id: null, command: 'warrenctl tokens add --type=proxy,node --ttl=1h' },
    { kind: 'role_changed', subject: 'edited', id: null, command: 'warrenctl create -f ROLE.yaml' },
    { kind: 'role_changed', subject: 'gone-since', id: null, command: 'warrenctl rm role/gone-since' },
    { kind: 'role_changed', subject: 'made-since', id: null, command: 'warrenctl create -f ROLE.yaml' },
    { kind: 'ca_rotated', subject: 'host', id: null, command: null },
  ])
  t.same(
    undoneLines(undoneItems(now, then, NOW)).at(-1),
    'the CAs are as they were before a rotation made since: devices that followed it do not trust them (restore a copy made after the rotation)',
  )
})
