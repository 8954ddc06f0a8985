import { join } from 'node:path'
import t, { type Test } from 'tap'
import { editorNow } from './api/access.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { Locked, Locks } from './locks.ts'
import { NodeDirectory } from './nodes.ts'
import { parseRole } from './role-spec.ts'
import { RoleDirectory } from './user-roles.ts'
import { UserDirectory } from './users.ts'
import { WebSessionRefused, WebSessions } from './web-sessions.ts'

function setup(t: Test) {
  let now = 1_765_000_000_000
  const backend = SqliteBackend.open(join(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const users = new UserDirectory(backend)
  const roles = new RoleDirectory(backend, users)
  const locked = new Map<string, string>()
  const sessions = new WebSessions({ backend, users, roles, refusedUser: (name) => locked.get(name), clock: () => now })
  return { backend, users, roles, locked, sessions, advance: (ms: number) => (now += ms) }
}

async function refused(t: Test, promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(error instanceof WebSessionRefused, `refused: ${(error as Error | undefined)?.message}`)
  t.match((error as Error).message, pattern)
}

t.test('a session is kept hashed, answers with its user, access and CSRF token, and ends at logout', async (t) => {
  const s = setup(t)
  const alice = await s.users.add('alice', ['root'], ['access'])
  const created = await s.sessions.create(alice)
  t.ok(Buffer.from(created.token, 'base64url').length >= 32, 'at least 32 random bytes')
  t.not(created.csrf_token, created.token)
  const stored = JSON.stringify(await s.backend.list('/web-sessions/'))
  t.notOk(stored.includes(created.token), 'the backend holds no token')
  const active = await s.sessions.use(created.token)
  t.equal(active.user.name, 'alice')
  t.same(active.access.logins, ['root'])
  t.equal(active.csrf, created.csrf_token)
  t.ok(await s.sessions.end(created.token))
  await refused(t, s.sessions.use(created.token), /logged out or expired/)
  await refused(t, s.sessions.use('not a token!'), /no valid web session/)
})

t.test("the roles' max_session_ttl bounds a session, as it bounds a certificate, and a shortened one ends it", async (t) => {
  const s = setup(t)
  await s.roles.put(parseRole({ kind: 'role', version: 'v1', metadata: { name: 'short' }, spec: { options: { max_session_ttl: '2h' } } }))
  const bob = await s.users.add('bob', ['pi'], ['short'])
  const created = await s.sessions.create(bob)
  t.equal(created.expires - (await s.sessions.use(created.token)).expires, 0)
  s.advance(3_600_000)
  t.ok(await s.sessions.use(created.token), "valid within the role's two hours")
  await s.roles.put(parseRole({ kind: 'role', version: 'v1', metadata: { name: 'short' }, spec: { options: { max_session_ttl: '30m' } } }))
  await refused(t, s.sessions.use(created.token), /expired/)
  const again = await s.sessions.create(bob)
  s.advance(31 * 60_000)
  await refused(t, s.sessions.use(again.token), /expired/)
})

t.test('a locked or removed user has no session, and removal ends them all', async (t) => {
  const s = setup(t)
  const carol = await s.users.add('carol', ['root'], ['access'])
  const first = await s.sessions.create(carol)
  const second = await s.sessions.create(carol)
  s.locked.set('carol', 'user carol is locked: lost laptop')
  await refused(t, s.sessions.use(first.token), /lost laptop/)
  s.locked.delete('carol')
  t.ok(await s.sessions.use(first.token), 'valid again once the lock is gone')
  await s.users.remove('carol')
  await refused(t, s.sessions.use(second.token), /no longer exists/)
  t.equal(await s.sessions.endAllOf('carol'), 2)
  t.same(await s.backend.list('/web-sessions/'), [])
})

t.test('a session written while a lock on its user was being made is ended, not left to serve once the lock is lifted', async (t) => {
  const s = setup(t)
  const alice = await s.users.add('alice', ['root'], ['access'])
  const locks = new Locks({ backend: s.backend, nodes: new NodeDirectory(s.backend, 30_000), users: s.users })
  const before = await s.sessions.create(alice)
  await s.sessions.endIfLockedMeanwhile(before, locks)
  t.equal((await s.sessions.use(before.token)).user.name, 'alice', 'no lock: the session stays')
  // The login checked for a lock, then the lock and its end of every session came, then the write.
  const lock = await locks.add({ user: 'alice', message: 'stolen laptop' })
  const raced = await s.sessions.create(alice)
  const ended = await s.sessions.endIfLockedMeanwhile(raced, locks).then(
    () => 'kept',
    (error: unknown) => error,
  )
  t.type(ended, Locked, 'it is ended, and the login refused')
  await locks.remove(lock.id)
  await refused(t, s.sessions.use(raced.token), /logged out or expired/)
})

t.test('a reset ends the sessions that began before it at once, by the generation it replaced', async (t) => {
  const s = setup(t)
  const alice = await s.users.add('alice', ['root'], ['access'])
  const session = await s.sessions.create(alice)
  t.equal((await s.sessions.use(session.token)).user.name, 'alice')
  await s.users.replaceGeneration('alice')
  await refused(t, s.sessions.use(session.token), /was reset since this session began/)
  const after = await s.sessions.create((await s.users.get('alice'))!)
  t.equal((await s.sessions.use(after.token)).user.name, 'alice', 'a session begun after it serves')
})

t.test('an editor is one by a certificate of the generation the user has now', async (t) => {
  const s = setup(t)
  await s.roles.put(parseRole({ kind: 'role', version: 'v1', metadata: { name: 'editors' }, spec: { allow: { logins: ['root'], node_labels: { '*': '*' }, admin: true } } }))
  const old = (await s.users.add('alice', ['root'], ['editors'])).generation
  t.equal(await editorNow(s, 'alice', old), true)
  t.equal(await editorNow(s, 'alice', undefined), true, 'a certificate of an earlier version carries none: judged by its roles')
  await s.users.replaceGeneration('alice')
  t.equal(await editorNow(s, 'alice', old), false, 'a certificate from before a reset is no editor, whatever the locks this server holds yet')
  t.equal(await editorNow(s, 'alice', (await s.users.get('alice'))!.generation), true)
})

t.test('a user of an earlier version (no generation) gets one at its web login, so that a reset ends the session too', async (t) => {
  const s = setup(t)
  await s.users.add('alice', ['root'], ['access'])
  // As an earlier version stored it: no generation.
  const { generation: _, ...legacy } = (await s.users.get('alice'))!
  await s.backend.put('/users/alice', JSON.stringify(legacy))
  const session = await s.sessions.create((await s.users.get('alice'))!)
  t.ok((await s.users.get('alice'))!.generation, 'the user has one now')
  await s.users.replaceGeneration('alice')
  await refused(t, s.sessions.use(session.token), /was reset since this session began/)
})
