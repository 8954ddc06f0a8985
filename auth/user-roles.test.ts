import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parse } from 'yaml'
import { loginRefusal, nodeRefusal, portRefusal } from '../shared/access.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { parseRole } from './role-spec.ts'
import { BUILT_IN_ROLES, DEFAULT_MAX_SESSION_TTL_MS, RoleDirectory, resolveAccess } from './user-roles.ts'
import { UserDirectory } from './users.ts'

const LAB_ROLE = `
kind: role
version: v1
metadata:
  name: lab
spec:
  allow:
    logins: [pi]
    node_labels:
      env: lab
      site: [berlin, paris]
    ports: [web]
  deny:
    ports: [db]
  options:
    max_session_ttl: 2h
`

/** A role as YAML gives it, for tests that break one field. */
interface RoleDocument {
  kind: unknown
  version: unknown
  metadata: Record<string, unknown>
  spec: Record<string, Record<string, unknown>>
}

function setup(t: Test) {
  const backend = SqliteBackend.open(join(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const users = new UserDirectory(backend)
  return { backend, users, roles: new RoleDirectory(backend, users) }
}

t.test('a role reads from YAML with its label values as lists', async (t) => {
  const role = parseRole(parse(LAB_ROLE))
  t.same(role.spec.allow, { logins: ['pi'], node_labels: { env: ['lab'], site: ['berlin', 'paris'] }, ports: ['web'] })
  t.same(role.spec.deny, { ports: ['db'] })
  t.same(role.spec.options, { max_session_ttl: '2h' })
})

t.test('every field is checked, and the error names it', async (t) => {
  const base = parse(LAB_ROLE)
  const variant = (change: (role: RoleDocument) => void) => {
    const copy = structuredClone(base) as RoleDocument
    change(copy)
    return () => parseRole(copy)
  }
  t.throws(
    variant((r) => (r.kind = 'user')),
    /^kind: must be "role", not "user"$/,
  )
  t.throws(
    variant((r) => (r.version = 'v2')),
    /^version: must be "v1"/,
  )
  t.throws(
    variant((r) => delete r.metadata.name),
    /^metadata\.name: a role needs a name$/,
  )
  t.throws(
    variant((r) => (r.metadata.name = 'Lab Role')),
    /^invalid role name "Lab Role"/,
  )
  t.throws(
    variant((r) => (r.spec.allow.login = ['pi'])),
    /^spec\.allow: unknown key "login": did you mean logins\?$/,
  )
  t.throws(
    variant((r) => (r.spec.alow = {})),
    /^spec: unknown key "alow": did you mean allow\?$/,
  )
  t.throws(
    variant((r) => (r.spec.allow.logins = 'pi')),
    /^spec\.allow\.logins: must be a list of strings$/,
  )
  t.throws(
    variant((r) => (r.spec.allow.logins = ['Bad Name'])),
    /^spec\.allow\.logins: "Bad Name" is not a login name/,
  )
  t.throws(
    variant((r) => (r.spec.allow.logins = ['*'])),
    /^spec\.allow\.logins: "\*" only denies every login; allow logins by name$/,
  )
  t.throws(
    variant((r) => (r.spec.allow.node_labels = { 'bad key!': 'x' })),
    /^spec\.allow\.node_labels: the label name "bad key!"/,
  )
  t.throws(
    variant((r) => (r.spec.allow.node_labels = { env: [1] })),
    /^spec\.allow\.node_labels\.env: must be a list of strings$/,
  )
  t.throws(
    variant((r) => (r.spec.allow.node_labels = { '*': 'lab' })),
    /the label name "\*" goes only with the value "\*"/,
  )
  t.throws(
    variant((r) => (r.spec.deny.ports = ['a b'])),
    /^spec\.deny\.ports: "a b" is not a port name$/,
  )
  t.throws(
    variant((r) => (r.spec.allow.admin = 'yes')),
    /^spec\.allow\.admin: must be true or false$/,
  )
  t.throws(
    variant((r) => (r.spec.options.max_session_ttl = '2 days')),
    /^spec\.options\.max_session_ttl: invalid duration/,
  )
  t.throws(
    variant((r) => (r.spec.options.max_session_ttl = '48h')),
    /^spec\.options\.max_session_ttl: at most 30h/,
  )
  t.throws(
    variant((r) => (r.spec.options.ttl = '1h')),
    /^spec\.options: unknown key "ttl"/,
  )
  t.throws(() => parseRole([]), /^the role: must be a mapping$/)
})

t.test('access: allow rules add up, deny rules take away, a role gives only the logins it names', async (t) => {
  const lab = parseRole(parse(LAB_ROLE))
  const noProd = parseRole({ kind: 'role', version: 'v1', metadata: { name: 'no-prod' }, spec: { deny: { node_labels: { env: 'prod' }, logins: ['root'] } } })
  const { access, maxSessionTtlMs } = resolveAccess([lab, noProd], ['root', 'admin'])
  t.same(access.logins, ['pi'], 'no-prod names no login, so gives none; root is denied')
  const portsOnly = parseRole({ kind: 'role', version: 'v1', metadata: { name: 'db-ports' }, spec: { allow: { node_labels: { env: 'prod' }, ports: ['db'] } } })
  const ported = resolveAccess([portsOnly], ['root'])
  t.same(ported.access.logins, [], "a role written to open a port opens no shell, whatever the user's own logins")
  t.not(loginRefusal(ported.access, 'root', { env: 'prod' }), undefined)
  t.equal(portRefusal(ported.access, 'db', { env: 'prod' }), undefined, 'and opens the port')
  const own = resolveAccess(
    [parseRole({ kind: 'role', version: 'v1', metadata: { name: 'own' }, spec: { allow: { node_labels: { env: 'prod' }, logins: ['{{internal.logins}}'] } } })],
    ['root'],
  )
  t.same(own.access.logins, ['root'], "'{{internal.logins}}' names the user's own")
  t.equal(nodeRefusal(access, { env: 'lab', site: 'paris' }), undefined)
  t.not(nodeRefusal(access, { env: 'lab', site: 'rome' }), undefined)
  t.equal(maxSessionTtlMs, 2 * 3_600_000, 'the smallest max_session_ttl')
  t.equal(portRefusal(access, 'web', { env: 'lab', site: 'paris' }), undefined)
  t.not(portRefusal(access, 'db', { env: 'lab', site: 'paris' }), undefined)
  const builtIn = resolveAccess([...BUILT_IN_ROLES], ['root'])
  t.same(builtIn.access.logins, ['root'])
  t.equal(nodeRefusal(builtIn.access, { env: 'prod' }), undefined)
  t.equal(builtIn.access.admin, true)
  t.equal(builtIn.maxSessionTtlMs, DEFAULT_MAX_SESSION_TTL_MS)
  // Two roles, each its own logins on its own nodes: root on db nodes does not make root on web nodes.
  const role = (name: string, env: string, logins: string[], ports: string[]) =>
    parseRole({ kind: 'role', version: 'v1', metadata: { name }, spec: { allow: { node_labels: { env }, logins, ports } } })
  const split = resolveAccess([role('dba', 'db', ['root'], ['pg']), role('web', 'web', ['www'], ['http'])], [])
  t.same(split.access.logins, ['root', 'www'], 'the certificate names every login')
  t.equal(loginRefusal(split.access, 'root', { env: 'db' }), undefined)
  t.not(loginRefusal(split.access, 'root', { env: 'web' }), undefined, "dba's root is not good on web's nodes")
  t.not(portRefusal(split.access, 'pg', { env: 'web' }), undefined, "nor dba's port")
  const loginsOnly = parseRole({ kind: 'role', version: 'v1', metadata: { name: 'logins-only' }, spec: { allow: { logins: ['root'] } } })
  const widened = resolveAccess([role('web', 'web', ['www'], []), loginsOnly], [])
  t.not(loginRefusal(widened.access, 'root', { env: 'web' }), undefined, 'a role that selects no node adds its logins to none')
  const none = resolveAccess([], ['root'])
  t.same(none.access.logins, [], 'no role, no login')
  t.not(nodeRefusal(none.access, {}), undefined)
  const everyLogin = resolveAccess([parseRole({ kind: 'role', version: 'v1', metadata: { name: 'x' }, spec: { allow: { logins: ['pi'] }, deny: { logins: ['*'] } } })], [])
  t.same(everyLogin.access.logins, [], 'a denied * takes every login')
})

t.test('forwarding options: port_forwarding false refuses -L and -R, true grants -R; forward_agent true grants -A', async (t) => {
  const role = (name: string, options: Record<string, unknown>) => parseRole({ kind: 'role', version: 'v1', metadata: { name }, spec: { options } })
  t.same(role('o', { port_forwarding: true, forward_agent: false }).spec.options, { port_forwarding: true, forward_agent: false })
  t.throws(() => role('o', { port_forwarding: 'yes' }), /^spec\.options\.port_forwarding: must be true or false$/)
  t.throws(() => role('o', { forward_agent: 1 }), /^spec\.options\.forward_agent: must be true or false$/)
  t.throws(() => role('o', { forward_agents: true }), /^spec\.options: unknown key "forward_agents": did you mean forward_agent\?$/)

  const forwarding = (...roles: Record<string, unknown>[]) => {
    const { local_forwarding, remote_forwarding, agent_forwarding } = resolveAccess(
      roles.map((options, i) => role(`r${i}`, options)),
      ['pi'],
    ).access
    return { local: local_forwarding, remote: remote_forwarding, agent: agent_forwarding }
  }
  t.same(forwarding({}), { local: true, remote: false, agent: false }, 'unset: ssh -L as before, nothing more')
  t.same(forwarding({ port_forwarding: true }), { local: true, remote: true, agent: false })
  t.same(forwarding({ port_forwarding: false }), { local: false, remote: false, agent: false })
  t.same(forwarding({ port_forwarding: true }, { port_forwarding: false }), { local: false, remote: false, agent: false }, 'a role that refuses wins')
  t.same(forwarding({ forward_agent: true }, { forward_agent: false }), { local: true, remote: false, agent: true }, 'a role that grants the agent suffices')
  t.same(forwarding(), { local: true, remote: false, agent: false }, 'no role')
})

t.test('connection and session limits: whole numbers from 1, the strictest role wins, none unless a role sets one', async (t) => {
  const role = (name: string, options: Record<string, unknown>) => parseRole({ kind: 'role', version: 'v1', metadata: { name }, spec: { options } })
  t.same(role('o', { max_sessions: 2, max_connections: 3 }).spec.options, { max_sessions: 2, max_connections: 3 })
  for (const bad of [0, -1, 1.5, '2', 10_001]) {
    t.throws(() => role('o', { max_sessions: bad }), /^spec\.options\.max_sessions: must be a whole number from 1 to 10000$/, `max_sessions: ${bad}`)
    t.throws(() => role('o', { max_connections: bad }), /^spec\.options\.max_connections: must be a whole number from 1 to 10000$/, `max_connections: ${bad}`)
  }
  const limits = (...roles: Record<string, unknown>[]) => {
    const { max_sessions, max_connections } = resolveAccess(
      roles.map((options, i) => role(`r${i}`, options)),
      ['pi'],
    ).access
    return { max_sessions, max_connections }
  }
  t.same(limits({}), { max_sessions: undefined, max_connections: undefined }, 'no role sets one: no limit')
  t.same(limits({ max_sessions: 4, max_connections: 2 }, { max_sessions: 2 }, {}), { max_sessions: 2, max_connections: 2 }, 'the strictest of those set')
})

t.test('roles are kept in the backend; built-ins are listed and cannot be replaced or removed', async (t) => {
  const { backend, users, roles } = setup(t)
  t.same(
    (await roles.list()).map((r) => r.metadata.name),
    ['access', 'editor'],
  )
  t.same(await roles.put(parseRole(parse(LAB_ROLE))), { created: true })
  t.same(await roles.put(parseRole(parse(LAB_ROLE))), { created: false }, 'a second create replaces')
  t.same(
    (await roles.list()).map((r) => r.metadata.name),
    ['access', 'editor', 'lab'],
  )
  const reopened = new RoleDirectory(backend, users)
  t.same((await reopened.get('lab'))?.spec.allow.ports, ['web'], 'read back from the backend')
  await t.rejects(roles.put({ ...parseRole(parse(LAB_ROLE)), metadata: { name: 'access' } }), /role "access" is built in and cannot be replaced/)
  await t.rejects(roles.remove('editor'), /role "editor" is built in and cannot be removed/)
  await t.rejects(roles.remove('nope'), /no role "nope"/)
  await t.rejects(roles.checkExist(['access', 'labb']), /no role "labb"/)
  await roles.remove('lab')
  t.equal(await roles.get('lab'), undefined, 'a role nobody has is removed')
  t.same(
    (await reopened.list()).map((r) => r.metadata.name),
    ['access', 'editor'],
  )
})

t.test('a role given to users is not removed, and the error names them', async (t) => {
  const { users, roles } = setup(t)
  await roles.put(parseRole(parse(LAB_ROLE)))
  await users.add('alice', ['pi'], ['lab'])
  await users.add('bob', ['pi'], ['access', 'lab'])
  await t.rejects(roles.remove('lab'), /^role "lab" is given to users alice, bob: take it from them first$/)
  t.ok(await roles.get('lab'), 'still there')
  const { access, maxSessionTtlMs } = await roles.accessOf((await users.get('alice'))!)
  t.same(access.logins, ['pi'])
  t.equal(maxSessionTtlMs, 2 * 3_600_000)
})

t.test("a role of the user's that no longer exists leaves the user nothing, not the other roles without it", async (t) => {
  const { backend, users, roles } = setup(t)
  const noRoot = parseRole({ kind: 'role', version: 'v1', metadata: { name: 'no-root' }, spec: { deny: { logins: ['root'] } } })
  await roles.put(noRoot)
  await users.add('carol', ['root', 'pi'], ['access', 'no-root'])
  t.same((await roles.accessOf((await users.get('carol'))!)).access.logins, ['pi'], 'the control: the deny takes root')
  // What a `roles rm` racing the user's creation could leave: the user names a deny role that is gone.
  await backend.txn([], [{ op: 'delete', key: '/roles/no-root' }])
  const { access } = await roles.accessOf((await users.get('carol'))!)
  t.same(access.logins, [], 'no login, root least of all')
  t.not(nodeRefusal(access, { env: 'lab' }), undefined, 'and no node')
})
