// The audit trail with real processes: every audited action done the way people do it
// (warrenctl, warren start, warren login, stock ssh), then `warrenctl audit ls --format=json`
// shows each event with its fields, auth_service.audit.file holds the same events as JSON
// lines, and no password, join token or sign-up token appears in either.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, ProxyProcess, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { codeAt, signUp } from './helpers/people.ts'

t.setTimeout(240_000)

const PASSWORD = 'a long enough passphrase'
const WRONG_PASSWORD = 'not the passphrase at all'
const auditFile = join(tempDir('warren-audit-'), 'audit.jsonl')
const auth = await new AuthProcess({ authServiceYaml: `  audit:\n    file: ${auditFile}\n` }).start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxyToken = await auth.token(['tokens', 'add', '--type=proxy'])
const proxy = await new ProxyProcess({ auth, token: proxyToken, pin }).start()
t.teardown(() => proxy.stop())
const login = testLogin()

/** Every secret the test hands out: none may reach the audit trail. */
const secrets: string[] = [PASSWORD, WRONG_PASSWORD, proxyToken]

async function auditLs(args: string[] = []): Promise<AuditEvent[]> {
  const listed = await auth.ctl(['audit', 'ls', '--format=json', ...args])
  if (listed.code !== 0) throw new Error(`audit ls failed: ${listed.stderr}`)
  return JSON.parse(listed.stdout) as AuditEvent[]
}

async function joinNode(name: string): Promise<string> {
  const token = await auth.token()
  secrets.push(token)
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${token}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => node.stop())
  await waitForNode(auth, name)
  return token
}

await joinNode('pi-audit')

t.test('a refused join is recorded with its reason and address, never the token', async (t) => {
  const bogus = 'bogus-token-0123456789abcdef'
  secrets.push(bogus)
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${bogus}`, `--ca-pin=${pin}`, '--nodename=pi-refused'])
  t.teardown(() => node.stop())
  await node.waitFor('the refused join', async () => (await auditLs(['--type=join', '--node=pi-refused'])).length > 0)
  const [refused] = await auditLs(['--type=join', '--node=pi-refused'])
  t.match(refused, { type: 'join', accepted: false, node: 'pi-refused', roles: 'node', client_addr: '127.0.0.1', reason: /token expired or not found/, cluster: 'test-cluster' })
  const [accepted] = await auditLs(['--type=join', '--node=pi-audit'])
  t.match(accepted, { accepted: true, node: 'pi-audit', host_id: /\S/, client_addr: '127.0.0.1' })
  const [hostCert] = await auditLs(['--type=cert.issued', '--node=pi-audit'])
  t.match(hostCert, { kind: 'host', host_id: accepted.host_id, principals: /pi-audit/, ttl_ms: Number })
})

t.test('tokens add and rm, by their ID', async (t) => {
  const added = await auth.ctl(['tokens', 'add', '--type=node', '--ttl=5m'])
  const value = /The invite token: (\S+)/.exec(added.stdout)![1]
  secrets.push(value)
  const [created] = (await auditLs(['--type=token.created'])).slice(-1)
  t.match(created, { token_id: /\S/, roles: 'node', single_use: false, expires: Number, actor: 'admin' })
  t.not(created.token_id, value, 'the ID, not the token')
  t.equal((await auth.ctl(['tokens', 'rm', created.token_id as string])).code, 0)
  const [removed] = await auditLs(['--type=token.removed'])
  t.match(removed, { token_id: created.token_id, actor: 'admin' })
})

t.test('a user is added, signs up, logs in, fails to log in, is locked and removed', async (t) => {
  const added = await auth.ctl(['users', 'add', 'bob', `--logins=${login}`])
  const invite = /--invite=([0-9a-f]{32})/.exec(added.stdout)![1]
  secrets.push(invite)
  const home = tempDir('warren-home-')
  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${invite}`, `--ca-pin=${pin}`], { WARREN_HOME: home }, PASSWORD)
  t.equal(signed.code, 0, signed.stderr)
  const good = await warren(['login', `--proxy=${proxy.web}`, '--user=bob'], { env: { WARREN_HOME: home }, input: `${PASSWORD}\n${codeAt(signed.secret!, signed.step! + 1)}\n` })
  t.equal(good.code, 0, good.stderr)
  const bad = await warren(['login', `--proxy=${proxy.web}`, '--user=bob'], {
    env: { WARREN_HOME: home },
    input: `${WRONG_PASSWORD}\n${codeAt(signed.secret!, signed.step! + 2)}\n`,
  })
  t.equal(bad.code, 1)

  const events = await auditLs(['--user=bob'])
  const ofType = (type: string) => events.filter((e) => e.type === type)
  t.match(ofType('user.created'), [{ user: 'bob', logins: login, roles: 'access', signup_token_id: /\S/, actor: 'admin' }])
  t.match(ofType('invite.accepted'), [{ user: 'bob', client_addr: '127.0.0.1' }])
  t.match(ofType('login'), [
    { success: true, user: 'bob', client_addr: '127.0.0.1' },
    { success: false, user: 'bob', reason: /\S/ },
  ])
  t.match(ofType('cert.issued'), [
    { kind: 'user', user: 'bob', principals: login, ttl_ms: Number },
    { kind: 'user', user: 'bob' },
  ])

  const locked = await auth.ctl(['lock', '--user=bob', '--message=on leave'])
  const lockId = /ID "([^"]+)"/.exec(locked.stdout)![1]
  t.equal((await auth.ctl(['lock', 'rm', lockId])).code, 0)
  t.equal((await auth.ctl(['users', 'rm', 'bob'])).code, 0)
  const later = await auditLs(['--user=bob', '--type=*.*'])
  t.match(
    later.filter((e) => e.type !== 'cert.issued'),
    [
      { type: 'user.created' },
      { type: 'invite.accepted' },
      { type: 'lock.created', lock_id: lockId, target: /bob/, message: 'on leave', actor: 'admin' },
      { type: 'user.removed', user: 'bob', actor: 'admin' },
    ],
  )
  t.match(await auditLs(['--type=lock.removed']), [{ lock_id: lockId, actor: 'admin' }])
})

t.test('roles created and removed', async (t) => {
  const file = join(tempDir(), 'role.yaml')
  writeFileSync(file, 'kind: role\nversion: v1\nmetadata:\n  name: lab\nspec:\n  allow:\n    node_labels:\n      env: lab\n')
  t.equal((await auth.ctl(['create', '-f', file])).code, 0)
  t.equal((await auth.ctl(['rm', 'role/lab'])).code, 0)
  t.match(await auditLs(['--type=role.*']), [
    { type: 'role.created', role: 'lab', replaced: false, actor: 'admin' },
    { type: 'role.removed', role: 'lab', actor: 'admin' },
  ])
})

t.test('a node removed', async (t) => {
  await joinNode('pi-gone')
  t.equal((await auth.ctl(['nodes', 'rm', 'pi-gone'])).code, 0)
  t.match(await auditLs(['--type=node.removed']), [{ node: 'pi-gone', host_id: /\S/, actor: 'admin' }])
})

t.test('a CA rotation phase, from and to', async (t) => {
  t.equal((await auth.ctl(['auth', 'rotate', '--type=user', '--manual', '--phase=init'])).code, 0)
  t.equal((await auth.ctl(['auth', 'rotate', '--type=user', '--manual', '--phase=rollback'])).code, 0)
  t.match(await auditLs(['--type=rotation.phase']), [
    { ca: 'user', from: 'standby', to: 'init', actor: 'admin' },
    { ca: 'user', from: 'init', to: 'standby' },
  ])
})

t.test('the file holds the same events as the backend, and no secret is in either', async (t) => {
  const listed = await auditLs()
  const text = await auth.ctl(['audit', 'ls'])
  t.match(text.stdout, /^Time\s+Type\s+User\s+Node\s+Details\n-+/)
  const lines = readFileSync(auditFile, 'utf8').trim().split('\n')
  t.same(
    lines.map((line) => JSON.parse(line)).sort((a, b) => a.time - b.time || a.id.localeCompare(b.id)),
    [...listed].sort((a, b) => a.time - b.time || a.id.localeCompare(b.id)),
  )
  for (const secret of secrets) {
    t.notOk(JSON.stringify(listed).includes(secret), `audit ls does not show ${secret.slice(0, 4)}…`)
    t.notOk(text.stdout.includes(secret), 'nor its table')
    t.notOk(lines.join('\n').includes(secret), 'nor the file')
  }
})
