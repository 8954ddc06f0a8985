// The audit trail with real processes: every audited action done the way people do it
// (warrenctl, warren start, warren login, stock ssh), then `warrenctl audit ls --format=json`
// shows each event with its fields, auth_service.audit.file holds the same events as JSON
// lines, and no password, join token or sign-up token appears in either. The node's events
// cross the tunnel at least once and are stored exactly once: the auth server is killed
// during a session and restarted, and every event of that session is in the log once.

import { spawn } from 'node:child_process'
import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { joinCluster } from '../shared/join.ts'
import { signAsNode } from '../shared/node-signature.ts'
import type { AuditEvent, RecordingSkippedCode } from '../shared/protocol/audit.ts'
import { AuthProcess, type Daemon, freePort, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { codeAt, loginBody, signUp } from './helpers/people.ts'

t.setTimeout(240_000)

const PASSWORD = 'a long enough passphrase'
const WRONG_PASSWORD = 'not the passphrase at all'
const auditFile = join(tempDir('warren-audit-'), 'audit.jsonl')
// A fixed port: the auth server is restarted where the proxy knows it.
const auth = await new AuthProcess({ authServiceYaml: `  audit:\n    file: ${auditFile}\n`, port: await freePort() }).start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxyToken = await auth.token(['tokens', 'add', '--type=proxy'])
const proxy = await new ProxyProcess({ auth, token: proxyToken, pin }).start()
t.teardown(() => proxy.stop())
const login = testLogin()

/** Every secret the test hands out: none may reach the audit trail. */
const secrets: string[] = [PASSWORD, WRONG_PASSWORD, proxyToken]

/** The audit log as `warrenctl audit ls --format=json` with `args` lists it, asked of the admin API straight (many times: no process each). */
async function auditLs(args: string[] = []): Promise<AuditEvent[]> {
  const query = new URLSearchParams(args.map((arg) => /^--([a-z]+)=(.*)$/.exec(arg)!.slice(1) as [string, string]))
  return (await auth.api<{ events: AuditEvent[] }>('GET', `/v1/audit/events?${query}`)).events
}

/** A node joined through the proxy (tunnel mode), or to `server` (the auth server: direct mode), whose policy lets ssh -L go anywhere. */
async function joinNode(name: string, server = proxy.web): Promise<Daemon> {
  const token = await auth.token()
  secrets.push(token)
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${dir}\nssh_service:\n  port_forwarding: any\n  listen_addr: 127.0.0.1:0\n`)
  const node = startNode([`--config=${config}`, `--data-dir=${dir}`, `--auth-server=${server}`, `--token=${token}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => node.stop())
  await waitForNode(auth, name)
  return node
}

/** Waits until `audit ls` with `args` satisfies `done`, and returns what it listed. */
async function auditUntil(args: string[], done: (events: AuditEvent[]) => boolean, timeoutMs = 60_000): Promise<AuditEvent[]> {
  const deadline = Date.now() + timeoutMs
  let events = await auditLs(args)
  while (!done(events) && Date.now() < deadline) {
    await sleep(250)
    events = await auditLs(args).catch(() => [])
  }
  return events
}

const node = await joinNode('pi-audit')

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

// Admin actions go through the admin API as warrenctl sends them (a process per call would
// make this file slow; warrenctl itself is tested for audit ls below).
t.test('tokens add and rm, by their ID', async (t) => {
  const added = await auth.api<{ token: string; id: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 300_000 })
  secrets.push(added.token)
  const created = (await auditLs(['--type=token.created'])).find((e) => e.token_id === added.id)
  t.match(created, { token_id: added.id, roles: 'node', single_use: false, expires: Number, actor: 'admin' })
  await auth.api('DELETE', `/v1/tokens/${added.id}`)
  t.match(await auditLs(['--type=token.removed']), [{ token_id: added.id, actor: 'admin' }])
})

/** POST /v1/login through the proxy, as warren login sends it: whether it succeeded. */
async function logIn(user: string, password: string, code: string): Promise<boolean> {
  const caPems = JSON.parse(readFileSync(auth.identityPath, 'utf8')).host_ca_certs
  const client = new ApiClient({ server: proxy.web, caPems })
  try {
    await client.call('POST /v1/login', { body: await loginBody(client, caPems, user, password, code) })
    return true
  } catch (error) {
    if (error instanceof ApiError) return false
    throw error
  } finally {
    await client.close()
  }
}

t.test('a user is added, signs up, logs in, fails to log in, is locked and removed', async (t) => {
  const added = await auth.api<{ signup_token: string }>('POST', '/v1/users', { name: 'bob', logins: [login] })
  secrets.push(added.signup_token)
  const home = tempDir('warren-home-')
  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${added.signup_token}`, `--ca-pin=${pin}`], { WARREN_HOME: home }, PASSWORD)
  t.equal(signed.code, 0, signed.stderr)
  t.equal(await logIn('bob', PASSWORD, codeAt(signed.secret!, signed.step! + 1)), true)
  t.equal(await logIn('bob', WRONG_PASSWORD, codeAt(signed.secret!, signed.step! + 2)), false)

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

  const lock = await auth.api<{ id: string }>('POST', '/v1/locks', { user: 'bob', message: 'on leave' })
  await auth.api('DELETE', `/v1/locks/${lock.id}`)
  await auth.api('POST', '/v1/users/bob/reset', {})
  await auth.api('DELETE', '/v1/users/bob')
  const later = await auditLs(['--user=bob', '--type=*.*'])
  t.match(
    later.filter((e) => e.type !== 'cert.issued'),
    [
      { type: 'user.created' },
      { type: 'invite.accepted' },
      { type: 'lock.created', lock_id: lock.id, target: /bob/, message: 'on leave', actor: 'admin' },
      { type: 'user.reset', user: 'bob', lock_id: /\S/, signup_token_id: /\S/, actor: 'admin' },
      { type: 'user.removed', user: 'bob', actor: 'admin' },
    ],
  )
  t.match(await auditLs(['--type=lock.removed']), [{ lock_id: lock.id, actor: 'admin' }])
})

t.test('roles created and removed', async (t) => {
  await auth.api('POST', '/v1/roles', {
    kind: 'role',
    version: 'v1',
    metadata: { name: 'lab' },
    spec: { allow: { logins: ['{{internal.logins}}'], node_labels: { env: ['lab'] } } },
  })
  await auth.api('DELETE', '/v1/roles/lab')
  t.match(await auditLs(['--type=role.*']), [
    { type: 'role.created', role: 'lab', replaced: false, actor: 'admin' },
    { type: 'role.removed', role: 'lab', actor: 'admin' },
  ])
})

t.test('a node removed', async (t) => {
  const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 300_000 })
  secrets.push(token)
  await joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: 'pi-gone', roles: ['node'], warn: () => {} })
  await auth.api('DELETE', '/v1/nodes/pi-gone')
  t.match(await auditLs(['--type=node.removed']), [{ node: 'pi-gone', host_id: /\S/, actor: 'admin' }])
})

t.test('a CA rotation phase, from and to', async (t) => {
  await auth.api('POST', '/v1/rotate', { type: 'user', manual: true, phase: 'init' })
  await auth.api('POST', '/v1/rotate', { type: 'user', manual: true, phase: 'rollback' })
  t.match(await auditLs(['--type=rotation.phase']), [
    { ca: 'user', from: 'standby', to: 'init', actor: 'admin' },
    { ca: 'user', from: 'init', to: 'standby' },
  ])
})

/** carol's OpenSSH credentials, from auth sign. */
let profile = ''

t.test('an SSH session: its start, the command it ran, a port forward and its end, from the node', async (t) => {
  profile = await signUser(auth, proxy.web, 'carol')
  const ran = await openssh(profile, [`${login}@pi-audit`, 'echo audited; exit 3'])
  t.equal(ran.code, 3, ran.stderr)
  t.equal(ran.stdout, 'audited\n')

  const echo = createServer((socket) => socket.pipe(socket)).listen(0, '127.0.0.1')
  await once(echo, 'listening')
  t.teardown(() => echo.close())
  const echoPort = (echo.address() as { port: number }).port
  const local = await freePort()
  const forward = spawn('ssh', ['-F', join(profile, 'ssh_config'), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${echoPort}`, `${login}@pi-audit`], {
    stdio: 'ignore',
  })
  const forwardExited = once(forward, 'exit')
  t.equal(await echoThrough(local, 'through the forward'), 'through the forward')
  forward.kill('SIGTERM')
  await forwardExited

  const events = await auditUntil(['--user=carol', '--type=*', '--node=pi-audit'], (all) => all.filter((e) => e.type === 'session.end').length === 2)
  const sessions = Map.groupBy(
    events.filter((e) => e.session_id),
    (e) => e.session_id as string,
  )
  t.equal(sessions.size, 2, 'two SSH connections, two sessions')
  const [commandSession, forwardSession] = [...sessions.values()]
  t.match(commandSession, [
    { type: 'session.start', user: 'carol', login, node: 'pi-audit', host_id: /\S/, client_addr: '127.0.0.1', cluster: 'test-cluster' },
    { type: 'exec', user: 'carol', login, node: 'pi-audit', command: 'echo audited; exit 3' },
    { type: 'session.end', user: 'carol', login, node: 'pi-audit', exit_status: 3, duration_ms: Number },
  ])
  t.match(forwardSession, [{ type: 'session.start' }, { type: 'port_forward', user: 'carol', host: '127.0.0.1', port: echoPort }, { type: 'session.end' }])
})

t.test("a proxy's stolen keys cannot write events or recordings in the node's name, nor change the node's", async (t) => {
  // By now the node has signed what the proxy carried for it (the session above).
  const hostId = loadIdentity(node.dataDir!, 'node')!.hostId
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
  t.teardown(() => asProxy.close())
  const attackerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const forged = { id: `forged-${randomUUID()}`, time: Date.now(), type: 'exec', user: 'mallory', login, node: 'pi-audit', command: 'rm -rf /' }
  // The node's own signature, as the proxy saw it pass, over events other than the ones sent.
  const nodeKey = createPrivateKey(loadIdentity(node.dataDir!, 'node')!.tlsKeyPem)
  const genuine = signAsNode(hostId, { kind: 'audit events', events: [{ ...forged, user: 'carol' }] }, nodeKey)
  const batches: [string, Record<string, unknown>][] = [
    ['unsigned', {}],
    ['signed with a key of its own', { signature: signAsNode(hostId, { kind: 'audit events', events: [forged] }, attackerKey) }],
    ['a signature over other events', { signature: genuine }],
  ]
  for (const [what, extra] of batches) {
    const sent = asProxy.call('POST /v1/proxies/audit-events', { body: { host_id: hostId, events: [forged], ...extra } as never })
    await t.rejects(sent, { status: 400, message: /not signed by/ }, `events ${what}: refused`)
  }
  const chunk = { session_id: `forged-${randomUUID()}`, offset: 0, data: Buffer.from('{"version":2}\n').toString('base64'), end: true }
  await t.rejects(
    asProxy.call('POST /v1/proxies/recording-chunks', { body: { host_id: hostId, ...chunk } }),
    { status: 400, message: /not signed by/ },
    'an unsigned recording chunk: refused',
  )
  const chunkSigned = signAsNode(hostId, { kind: 'recording chunk', chunk }, attackerKey)
  await t.rejects(
    asProxy.call('POST /v1/proxies/recording-chunks', { body: { host_id: hostId, ...chunk, signature: chunkSigned } }),
    { status: 400, message: /not signed by/ },
    'a recording chunk signed with its own key: refused',
  )
  t.same(
    (await auditLs(['--type=*'])).filter((event) => String(event.id).startsWith('forged-')),
    [],
    'no forged event is in the log',
  )
  t.equal((await auth.ctl(['recordings', 'ls', '--format=json'])).stdout.includes(chunk.session_id), false, 'no forged recording is kept')
})

t.test('nor in the name of a node that has not sent anything yet', async (t) => {
  const quiet = await joinNode('pi-quiet')
  const hostId = loadIdentity(quiet.dataDir!, 'node')!.hostId
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
  t.teardown(() => asProxy.close())
  const forged = { id: `forged-${randomUUID()}`, time: Date.now(), type: 'exec', user: 'mallory', login, node: 'pi-quiet', command: 'rm -rf /' }
  await t.rejects(
    asProxy.call('POST /v1/proxies/audit-events', { body: { host_id: hostId, events: [forged] } as never }),
    { status: 400, message: /not signed by host/ },
    'unsigned: refused',
  )
  const chunk = { session_id: `forged-${randomUUID()}`, offset: 0, data: Buffer.from('{"version":2}\n').toString('base64'), end: true }
  await t.rejects(
    asProxy.call('POST /v1/proxies/recording-chunks', { body: { host_id: hostId, ...chunk } }),
    { status: 400, message: /not signed by host/ },
    'an unsigned recording chunk: refused',
  )
  t.same(
    (await auditLs(['--node=pi-quiet', '--type=*'])).filter((event) => event.id === forged.id),
    [],
    'the forged event is not in the log',
  )
})

t.test('a direct node delivers its events itself, as the node its certificate names', async (t) => {
  const direct = await joinNode('pi-direct', auth.address)
  const ran = await openssh(profile, [`${login}@pi-direct`, 'exit 0'])
  t.equal(ran.code, 0, ran.stderr)
  const ended = await auditUntil(['--node=pi-direct', '--type=session.end'], (events) => events.length === 1)
  t.match(ended, [{ user: 'carol', login, node: 'pi-direct', exit_status: 0 }])

  // The node's own certificate, with events that name another node: the certificate decides.
  const identity = loadIdentity(direct.dataDir!)!
  const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
  t.teardown(() => client.close())
  const forged = { id: 'forged-event-0001', time: Date.now(), type: 'exec' as const, command: 'forged', node: 'pi-audit', host_id: 'someone-else' }
  t.same(await client.call('POST /v1/audit/events', { body: { events: [forged] } }), { stored: 1 })
  t.same(await client.call('POST /v1/audit/events', { body: { events: [forged] } }), { stored: 0 }, 'sent again: stored once')
  const stored = (await auditLs(['--type=exec'])).filter((e) => e.id === forged.id)
  t.match(stored, [{ node: 'pi-direct', host_id: identity.hostId, command: 'forged' }])
  t.equal((await auditLs(['--node=pi-audit', '--type=exec'])).filter((e) => e.id === forged.id).length, 0, 'nothing was filed under the node it named')
  // A session the node did not record is the node's to tell.
  const skipped = {
    id: 'skipped-event-0001',
    time: Date.now(),
    type: 'recording.skipped' as const,
    session_id: randomUUID(),
    user: 'carol',
    reason_code: 'user_share' satisfies RecordingSkippedCode,
    reason: "the user's share is full",
  }
  t.same(await client.call('POST /v1/audit/events', { body: { events: [skipped] } }), { stored: 1 }, 'a recording.skipped event is taken from a node')
  t.match(
    (await auditLs(['--type=recording.skipped'])).filter((e) => e.id === skipped.id),
    [{ node: 'pi-direct', session_id: skipped.session_id, user: 'carol', reason_code: 'user_share' }],
  )
  // Its events were signed: a proxy's keys cannot write unsigned ones in its name.
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
  t.teardown(() => asProxy.close())
  const relayed = { ...forged, id: 'relayed-event-0001' }
  await t.rejects(asProxy.call('POST /v1/proxies/audit-events', { body: { host_id: identity.hostId, events: [relayed] } }), { status: 400, message: /not signed by/ })

  // Nor spend its budget with forgeries in its name, so that its own events would wait and then be dropped.
  const refusals = new Set<number>()
  for (let batch = 0; batch < 15; batch++) {
    const events = Array.from({ length: 100 }, (_, i) => ({ ...forged, id: `spent-${batch}-${i}` }))
    const signature = signAsNode(identity.hostId, { kind: 'audit events', events }, stolen.tlsKeyPem)
    try {
      await asProxy.call('POST /v1/proxies/audit-events', { body: { host_id: identity.hostId, events, signature } })
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      refusals.add(error.status)
    }
  }
  t.same([...refusals], [400], "fifteen batches of 100 signed with the proxy's key, past the node's burst: each refused")
  const own = Array.from({ length: 100 }, (_, i) => ({ ...forged, id: `own-after-forgeries-${i}` }))
  t.same(await client.call('POST /v1/audit/events', { body: { events: own } }), { stored: 100 }, "the node's own batch is stored at once")
})

t.test("a node's keys sending past its budget: the batch over it is refused with 429, and stored once the budget refilled", async (t) => {
  const flooding = await joinNode('pi-flood', auth.address)
  const identity = loadIdentity(flooding.dataDir!)!
  const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
  t.teardown(() => client.close())
  const batchOf = (n: number) => Array.from({ length: 100 }, (_, i) => ({ id: `flood-${n}-${i}`, time: Date.now(), type: 'exec' as const, command: 'flood' }))
  // Batches of 100 until one is refused: at least the burst (1,000) passes, and not much more.
  let accepted = 0
  let refusal: ApiError | undefined
  let batch = 0
  for (; batch < 30 && !refusal; batch++) {
    try {
      accepted += (await client.call('POST /v1/audit/events', { body: { events: batchOf(batch) } })).stored
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      refusal = error
    }
  }
  t.ok(accepted >= 1000 && accepted < 3000, `the burst passed (${accepted} stored)`)
  t.match(refusal, { status: 429, retryAfterS: Number }, 'then refused with the status the node retries on')
  const refused = batch - 1
  t.same(
    (await auditLs(['--node=pi-flood', '--type=exec'])).filter((e) => String(e.id).startsWith(`flood-${refused}-`)),
    [],
    'nothing of the refused batch stored',
  )
  await sleep(refusal!.retryAfterS! * 1000)
  t.same(await client.call('POST /v1/audit/events', { body: { events: batchOf(refused) } }), { stored: 100 }, 'sent again after Retry-After: stored')
})

t.test('the auth server killed during a session: every event of it is stored once after the restart', async (t) => {
  const ssh = spawn('ssh', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@pi-audit`, 'read line; echo "got $line"; exit 7'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let output = ''
  ssh.stdout.on('data', (chunk) => (output += chunk))
  const exited = once(ssh, 'exit')
  let errors = ''
  ssh.stderr.on('data', (chunk) => (errors += chunk))
  // carol's third session on pi-audit (two came before), once its command runs.
  const started = await auditUntil(['--user=carol', '--node=pi-audit', '--type=session.start'], (events) => events.length === 3)
  t.equal(started.length, 3, 'the session started while the auth server was up')
  const sessionId = started[2].session_id
  await auditUntil(['--user=carol', '--type=exec'], (events) => events.some((e) => e.session_id === sessionId))

  await auth.stop('SIGKILL')
  // The session goes on through the proxy and the tunnel, and ends while the auth server is down.
  ssh.stdin.end('bye\n')
  const [code] = await exited
  t.equal(code, 7, errors)
  t.equal(output, 'got bye\n')
  const waiting = await node.waitForStatus('the session end queued', (status) => (status.node?.events?.queued ?? 0) > 0)
  t.equal(waiting.node?.events?.dropped, 0)

  await auth.start()
  const events = await auditUntil(['--user=carol'], (all) => all.some((e) => e.type === 'session.end' && e.session_id === sessionId))
  const ofSession = events.filter((e) => e.session_id === sessionId)
  const count = (type: string) => ofSession.filter((e) => e.type === type).length
  t.same({ start: count('session.start'), exec: count('exec'), end: count('session.end') }, { start: 1, exec: 1, end: 1 }, 'each once')
  t.match(
    ofSession.find((e) => e.type === 'session.end'),
    { exit_status: 7, user: 'carol', node: 'pi-audit' },
  )
  t.equal(new Set(ofSession.map((e) => e.id)).size, ofSession.length, 'no ID twice')
  await node.waitForStatus('the queue emptied', (status) => status.node?.events?.queued === 0)
})

/** Sends `text` to 127.0.0.1:port, retrying while ssh has not opened it, and returns what came back. */
async function echoThrough(port: number, text: string): Promise<string> {
  for (let attempt = 0; attempt < 150; attempt++) {
    const reply = await new Promise<string | undefined>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write(text))
      let got = ''
      socket.setTimeout(10_000, () => socket.destroy())
      socket.on('data', (data) => {
        got += data
        if (got.length >= text.length) socket.destroy()
      })
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED' ? undefined : got))
      socket.on('close', () => resolve(got))
    })
    if (reply !== undefined) return reply
    await sleep(100)
  }
  throw new Error(`nothing listened on 127.0.0.1:${port}`)
}

t.test('an automatic rotation records each phase it steps through', async (t) => {
  await auth.api('POST', '/v1/rotate', { type: 'user', grace_period_ms: 2000 })
  const phases = await auditUntil(['--type=rotation.phase'], (events) => events.some((e) => e.actor === 'automatic' && e.to === 'standby'))
  t.match(phases.filter((e) => e.actor !== 'admin' || e.to === 'init').slice(-4), [
    { ca: 'user', from: 'standby', to: 'init', actor: 'admin' },
    { ca: 'user', from: 'init', to: 'update_clients', actor: 'automatic' },
    { ca: 'user', from: 'update_clients', to: 'update_servers', actor: 'automatic' },
    { ca: 'user', from: 'update_servers', to: 'standby', actor: 'automatic' },
  ])
})

t.test('the file holds the same events as the backend, and no secret is in either', async (t) => {
  const listed = await auditLs()
  const json = await auth.ctl(['audit', 'ls', '--since=1h', '--format=json'])
  t.same(JSON.parse(json.stdout), listed, 'warrenctl audit ls --format=json lists what the API answers')
  const sessions = JSON.parse((await auth.ctl(['audit', 'ls', '--type=session.*', '--user=carol', '--node=pi-audit', '--format=json'])).stdout) as AuditEvent[]
  t.same(
    sessions.map((e) => e.type),
    ['session.start', 'session.end', 'session.start', 'session.end', 'session.start', 'session.end'],
    'with its filters',
  )
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

t.test('an SFTP session: the file operations it performed, with their paths and bytes', async (t) => {
  // Fresh credentials: the rotations above have replaced the CA that signed the first ones.
  const sftpProfile = await signUser(auth, proxy.web, 'carol')
  const local = join(tempDir('warren-sftp-'), 'payload.bin')
  writeFileSync(local, Buffer.alloc(1000, 'a'))
  // The login is not root: /tmp is where it may write.
  const remote = `/tmp/warren-audit-${randomUUID()}.bin`
  const batch = join(tempDir('warren-sftp-batch-'), 'batch')
  writeFileSync(batch, `put ${local} ${remote}\nrename ${remote} ${remote}.old\nrm ${remote}.old\n`)
  const sftp = spawn('sftp', ['-F', join(sftpProfile, 'ssh_config'), '-o', 'BatchMode=yes', '-b', batch, `${login}@pi-audit`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let errors = ''
  sftp.stderr.on('data', (chunk) => (errors += chunk))
  const [code] = await once(sftp, 'exit')
  t.equal(code, 0, `sftp put, rename and rm ${errors}`)
  const operations = await auditUntil(['--user=carol', '--type=sftp', '--node=pi-audit'], (all) => all.some((e) => e.operation === 'remove'))
  t.match(operations, [
    { type: 'sftp', user: 'carol', login, node: 'pi-audit', session_id: /\S/, operation: 'open', path: remote, flags: 'write,create,truncate' },
    { type: 'sftp', operation: 'write', path: remote, bytes: 1000 },
    { type: 'sftp', operation: 'rename', path: remote, target: `${remote}.old` },
    { type: 'sftp', operation: 'remove', path: `${remote}.old` },
  ])
})
