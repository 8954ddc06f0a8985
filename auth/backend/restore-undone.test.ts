// What a restore says it undoes, from two backends made here record by record: what came
// and went both ways, and nothing said of what a restore does not change (a user from
// before generations given one, a token or lock that has ended by now, labels written
// again unchanged).

import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { undoneByRestore } from './restore-undone.ts'
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
