// Identity takeovers tried as an attacker would, against a real auth server, a real proxy
// and real nodes started with the project's CLI: a second device claiming a node's name, a
// join naming the victim's host ID, a join naming the proxy's ID from anonymous discovery
// (then a host CA rotation), a join asking to certify a key the caller does not hold, keys
// of refused types, and a flood of renewal requests. Each must be refused, and users must
// still reach the real node. Then the ways an admin replaces or removes a node on purpose.

import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { AgentTunnel } from '../agent/tunnel.ts'
import { ApiClient } from '../shared/api-client.ts'
import { certSubject, issuedByAny } from '../shared/cert-subject.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { generateJoinKeys, type JoinFields, type JoinKeys, joinCluster, signedJoinBody } from '../shared/join.ts'
import { createLogger } from '../shared/log.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { AuthProcess, type Daemon, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

t.setTimeout(300_000)

const log = createLogger('test', { level: 'error' })
// Every attack below is a failed join from 127.0.0.1; the limiter's own test is elsewhere.
const auth = new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1000, per_minute: 1000 }' })
let proxy: ProxyProcess
let pin = ''
let profile = ''
const servers: Server[] = []
const daemons: Daemon[] = []

t.before(async () => {
  await auth.start()
  pin = await auth.pin()
  proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, nodename: 'edge' }).start()
  profile = await signUser(auth, proxy.web)
})

/** Fresh user credentials: known_hosts with the nodes registered now, trust in the host CA of now. */
async function signAgain(): Promise<void> {
  profile = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', '--user=alice', '--ttl=1h', `--out=${profile}`, '--format=openssh', `--proxy=${proxy.web}`])
  if (signed.code !== 0) throw new Error(`auth sign failed: ${signed.stderr}`)
}
t.teardown(async () => {
  for (const daemon of daemons) await daemon.stop()
  for (const server of servers) server.close()
  await proxy?.stop()
  await auth.stop()
})

/** A local TCP service that says who it belongs to, declared as the node's `webui` port. */
async function whoAmI(text: string): Promise<number> {
  const server = createServer((socket) => socket.end(text))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  servers.push(server)
  return (server.address() as { port: number }).port
}

/** A node process joined through the proxy, with a `webui` port that answers `who`. */
async function node(nodename: string, who: string, token: string, dataDir = tempDir()): Promise<{ daemon: Daemon; dataDir: string }> {
  const config = join(dataDir, 'warren.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${dataDir}\nssh_service:\n  forward_ports: [{ name: webui, addr: "127.0.0.1:${await whoAmI(who)}" }]\n`)
  const daemon = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${token}`, `--ca-pin=${pin}`, `--nodename=${nodename}`])
  daemons.push(daemon)
  return { daemon, dataDir }
}

/** What a user reaches at `target`'s webui port through the proxy (`warren proxy port`). */
async function webui(target: string): Promise<string> {
  const result = await warren(['proxy', 'port', `--identity=${profile}`, target, 'webui'])
  return result.code === 0 ? result.stdout : `failed: ${result.stderr.trim()}`
}

/** An anonymous client of the auth server, verifying it against the host CA as a joining device does. */
function anonymousClient(server = auth.address): ApiClient {
  const caPems = JSON.parse(readFileSync(auth.identityPath, 'utf8')).host_ca_certs as string[]
  return new ApiClient({ server, caPems })
}

/** POST /v1/join with a fresh challenge, signed with `keys`, plus whatever `extra` adds or overrides. */
async function rawJoin(fields: JoinFields, keys: JoinKeys = generateJoinKeys(), extra: Record<string, unknown> = {}): Promise<unknown> {
  const client = anonymousClient()
  try {
    const { nonce } = await client.request<{ nonce: string }>('POST', '/v1/join/challenge', {})
    return await client.request('POST', '/v1/join', { ...signedJoinBody('test-cluster', nonce, fields, keys), ...extra })
  } finally {
    await client.close()
  }
}

async function refusal(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof ApiError) return error
    throw error
  }
  throw new Error('the request was accepted')
}

const registeredHosts = async () => (await auth.api<{ nodes: { host_id: string; nodename: string }[] }>('GET', '/v1/nodes')).nodes

let victim: { daemon: Daemon; dataDir: string; hostId: string }

t.test('(a) a second device with another valid token and --nodename=pi-1 is refused; users still reach the real pi-1', async (t) => {
  const real = await node('pi-1', 'the real pi-1', await auth.token())
  await waitForNode(auth, 'pi-1')
  victim = { ...real, hostId: loadIdentity(real.dataDir)!.hostId }
  t.equal(await webui('pi-1'), 'the real pi-1')

  const impostor = await node('pi-1', 'the impostor', await auth.token())
  await until("the impostor's agent to exit", () => !impostor.daemon.running, { timeoutMs: 60_000 })
  t.equal(await impostor.daemon.exited, 3, "the impostor's agent exits as a refused join, which systemd does not restart")
  t.match(impostor.daemon.stderr, 'nodename "pi-1" is already registered to another node; remove it first with warrenctl nodes rm pi-1')
  t.notOk(loadIdentity(impostor.dataDir), 'it holds no certificate')

  // The attack waited for the real node to reconnect: restart it.
  await real.daemon.stop()
  const back = startNode([`--config=${join(real.dataDir, 'warren.yaml')}`])
  daemons.push(back)
  victim.daemon = back
  await until('the real pi-1 back', async () => (await webui('pi-1')) === 'the real pi-1', { timeoutMs: 60_000, everyMs: 500 })
  await signAgain()
  const login = await warren(['ssh', `--identity=${profile}`, `${testLogin()}@pi-1`, 'echo', 'reached'])
  t.equal(login.code, 0, `warren ssh (strict host key checking against the registry): ${login.stderr}`)
  t.equal(login.stdout, 'reached\n')
  t.same(
    (await registeredHosts()).filter((n) => n.nodename === 'pi-1').map((n) => n.host_id),
    [victim.hostId],
    'one pi-1, the real one',
  )
})

t.test("(b) a join naming the victim's host ID is refused, and its registered SSH key is unchanged", async (t) => {
  const error = await refusal(rawJoin({ token: await auth.token(), nodename: 'evil', roles: ['node'] }, generateJoinKeys(), { host_id: victim.hostId }))
  t.equal(error.status, 400)
  t.match(error.message, 'field "host_id" is not accepted: the auth server assigns host IDs')

  const victimKey = sshPublicKeyLine(createPublicKey(createPrivateKey(loadIdentity(victim.dataDir)!.sshKeyPem)))
  await signAgain()
  const line = readFileSync(join(profile, 'known_hosts'), 'utf8')
    .split('\n')
    .find((l) => l.includes(victim.hostId))
  t.equal(line?.split(' ').slice(1, 3).join(' '), victimKey.split(' ').slice(0, 2).join(' '), "known_hosts still certifies the victim's own key")
  t.equal(await webui(victim.hostId), 'the real pi-1', 'and its host ID still reaches it')
})

t.test("a join asking to certify a key the caller does not hold (the host CA's own) is refused", async (t) => {
  const ca = await anonymousClient().request<{ host_ca_certs: string[] }>('GET', '/v1/ca')
  const caKey = new X509Certificate(ca.host_ca_certs[0]).publicKey
  const error = await refusal(
    rawJoin({ token: await auth.token(), nodename: 'ca-thief', roles: ['node'] }, generateJoinKeys(), { tls_public_key: caKey.export({ type: 'spki', format: 'pem' }) }),
  )
  t.equal(error.status, 403)
  t.match(error.message, 'field "tls_signature" is not a signature by the key in "tls_public_key"')

  // A request replayed as it was: its nonce is spent.
  const client = anonymousClient()
  t.teardown(() => client.close())
  const { nonce } = await client.request<{ nonce: string }>('POST', '/v1/join/challenge', {})
  const body = signedJoinBody('test-cluster', nonce, { token: await auth.token(), nodename: 'once', roles: ['node'] }, generateJoinKeys())
  await client.request('POST', '/v1/join', body)
  const replay = await refusal(client.request('POST', '/v1/join', body))
  t.equal(replay.status, 403)
  t.match(replay.message, 'the join challenge was already used')
  const forged = await refusal(client.request('POST', '/v1/join', { ...body, nonce: nonce.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) }))
  t.match(forged.message, 'the join challenge was not issued by this cluster')
})

t.test('keys of refused types are refused by name', async (t) => {
  const ssh = generateKeyPairSync('ed25519')
  for (const [curve, name] of [
    ['secp256k1', 'secp256k1'],
    ['P-521', 'P-521'],
  ]) {
    const error = await refusal(rawJoin({ token: await auth.token(), nodename: `k-${name}`, roles: ['node'] }, { tls: generateKeyPairSync('ec', { namedCurve: curve }), ssh }))
    t.equal(error.status, 400)
    t.match(error.message, `"${name}" keys are not accepted: use Ed25519, ECDSA P-256 or P-384`)
  }
  const users = await refusal(
    auth.api('POST', '/v1/users/alice/certs', {
      ttl_ms: 60_000,
      ssh_public_key: sshPublicKeyLine(ssh.publicKey),
      tls_public_key: generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ type: 'spki', format: 'pem' }),
    }),
  )
  t.match(users.message, '"secp256k1" keys are not accepted', 'user certificates follow the same rule')
})

t.test('a flood of renewal requests on a control stream makes at most one certificate', async (t) => {
  const issued = async () => (await auth.api<{ renewals_issued: number }>('GET', '/v1/status')).renewals_issued
  let identity = await joinCluster({ authServer: proxy.web, token: await auth.token(), caPins: [pin], nodename: 'flooder', roles: ['node'], warn: () => {} })
  const [host, port] = [proxy.tunnel.slice(0, proxy.tunnel.lastIndexOf(':')), Number(proxy.tunnel.slice(proxy.tunnel.lastIndexOf(':') + 1))]
  const answers: string[] = []
  const open = async () => {
    const tunnel = await AgentTunnel.open({ host, port, identity, keepAliveIntervalMs: 15_000, labels: () => ({}), services: [], onStream: (s) => s.destroy(), log })
    t.teardown(() => tunnel.close())
    tunnel.activate()
    tunnel.on('certs', () => answers.push('certs'))
    tunnel.on('renew_failed', (message: { error: string }) => answers.push(message.error))
    return tunnel
  }
  const flood = (tunnel: AgentTunnel) => {
    for (let i = 0; i < 2000; i++) tunnel.requestRenewal()
  }
  const before = await issued()
  flood(await open())
  await until('an answer', () => answers.length > 0, { timeoutMs: 30_000 })
  t.match(answers[0], /not due for renewal until/, 'a certificate outside its renewal window is not renewed')
  t.equal(await issued(), before, 'and nothing was signed')

  // In a rotation every node's certificate is due at once: still one certificate per host.
  t.equal((await auth.ctl(['auth', 'rotate', '--type=host', '--manual', '--phase=init'])).code, 0)
  // As an admin waits between phases: the proxy trusts the new CA before the auth server may serve with it.
  await proxy.daemon.waitForStatus('the proxy to trust the new host CA', (status) => status.proxy?.trusted_host_ca_pins.length === 2)
  // What an agent takes from the proxy's CA announcement in this phase: from update_clients
  // on, the proxy may present a certificate from the new CA.
  identity = { ...identity, hostCAPems: (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs }
  t.equal((await auth.ctl(['auth', 'rotate', '--type=host', '--manual', '--phase=update_clients'])).code, 0)
  answers.length = 0
  // One tunnel after the other: a second tunnel of the same host replaces the first at the
  // proxy, which would lose the first one's answer.
  flood(await open())
  await until('an answer on the first tunnel', () => answers.length >= 1, { timeoutMs: 30_000 })
  flood(await open())
  await until('an answer on the second tunnel', () => answers.length >= 2, { timeoutMs: 30_000 })
  t.ok(
    answers.every((a) => a === 'certs'),
    `renewed: ${answers.join('; ')}`,
  )
  // The counter is the auth server's: the proxy and pi-1 renew in this rotation too.
  const made = (await issued()) - before
  t.ok(made >= 1 && made <= 3, `4,000 requests over two tunnels: ${made} certificate(s) made in all, at most one of them this host's`)
})

t.test("(c) a join with the proxy's ID from anonymous discovery cannot touch it; after the rotation the proxy renews as a proxy", async (t) => {
  const discovery = await anonymousClient(proxy.web).request<{ proxy_id: string }>('GET', '/v1/discovery')
  const error = await refusal(rawJoin({ token: await auth.token(), nodename: 'edge', roles: ['node'] }, generateJoinKeys(), { host_id: discovery.proxy_id }))
  t.equal(error.status, 400)
  t.match(error.message, 'field "host_id" is not accepted')
  // The proxy's name is no node's: a node may take it, as a new host, and the proxy is untouched.
  const named = (await rawJoin({ token: await auth.token(), nodename: 'edge', roles: ['node'] })) as { host_id: string }
  t.not(named.host_id, discovery.proxy_id)

  // The rotation the previous test started, carried on to the end.
  const signing = (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs[0]
  await until(
    'the proxy to renew from the new CA',
    () => {
      const stored = loadIdentity(proxy.dataDir, 'proxy')
      return stored !== undefined && issuedByAny(new X509Certificate(stored.tlsCertPem), [signing])
    },
    { timeoutMs: 60_000 },
  )
  const proxyCert = certSubject(loadIdentity(proxy.dataDir, 'proxy')!.tlsCertPem)
  t.same({ id: proxyCert.commonName, roles: proxyCert.roles }, { id: discovery.proxy_id, roles: ['proxy'] }, 'a proxy certificate, for the proxy')
  await until('pi-1 to renew from the new CA', () => issuedByAny(new X509Certificate(loadIdentity(victim.dataDir)!.tlsCertPem), [signing]), { timeoutMs: 60_000 })
  for (const phase of ['update_servers', 'standby']) t.equal((await auth.ctl(['auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`])).code, 0, phase)

  // The cluster works: a new node joins with the new pin, and users reach pi-1.
  pin = await auth.pin()
  await signAgain()
  await node('after-rotation', 'after', await auth.token())
  await waitForNode(auth, 'after-rotation', 60_000)
  t.equal(await webui('pi-1'), 'the real pi-1')
  t.equal(await webui('after-rotation'), 'after')
})

t.test('a token made for a name replaces the device that holds it; the old one can no longer renew', async (t) => {
  const old = await node('pi-9', 'old pi-9', await auth.token())
  await waitForNode(auth, 'pi-9', 60_000)
  const oldIdentity = loadIdentity(old.dataDir)!
  const invite = await auth.ctl(['nodes', 'add', '--nodename=pi-9'])
  t.match(invite.stdout, 'It joins only a node named pi-9, and replaces the node registered with that name')
  const token = /The invite token: (\S+)/.exec(invite.stdout)![1]
  t.match((await auth.ctl(['tokens', 'ls'])).stdout, /node \(single use\) \(for pi-9\)/)

  const wrongName = await node('pi-10', 'wrong', token)
  await until('the join under another name to fail', () => !wrongName.daemon.running, { timeoutMs: 60_000 })
  t.equal(await wrongName.daemon.exited, 3, 'a refused join')
  t.match(wrongName.daemon.stderr, 'the token is for node "pi-9"')

  const replacement = await node('pi-9', 'new pi-9', token)
  await until('the new pi-9 to answer', async () => (await webui('pi-9')) === 'new pi-9', { timeoutMs: 60_000, everyMs: 500 })
  // The listing shows nodes whose heartbeat is fresh: the new pi-9's first may land after its tunnel is up.
  const newHostId = loadIdentity(replacement.dataDir)!.hostId
  const pi9Hosts = async () => (await registeredHosts()).filter((n) => n.nodename === 'pi-9').map((n) => n.host_id)
  await until('the new pi-9 to be listed', async () => (await pi9Hosts()).includes(newHostId), { timeoutMs: 60_000, everyMs: 200 })
  t.same(await pi9Hosts(), [newHostId], 'one pi-9, the new one')
  t.match(await webui(oldIdentity.hostId), `node "${oldIdentity.hostId}" is not connected to this proxy`, "the old device's tunnel is closed")

  const direct = new ApiClient({ server: auth.address, caPems: oldIdentity.hostCAPems, certPem: oldIdentity.tlsCertPem, keyPem: oldIdentity.tlsKeyPem })
  t.teardown(() => direct.close())
  const renewal = await refusal(direct.request('POST', '/v1/renew', {}))
  t.equal(renewal.status, 401, 'its certificate is refused as a removed host’s is')
  t.match(renewal.message, `host ${oldIdentity.hostId} is not registered in this cluster: node "pi-9" was replaced by host ${newHostId}`)
  // Refused as a removed host is, by what every proxy reads, a restarted one too: not only by
  // the memory of the proxies that saw the replacement happen.
  const all = (await auth.ctl(['nodes', 'ls', '--all', '--format=json'])).stdout
  const listed = (JSON.parse(all) as { host_id: string; status: string }[]).find((n) => n.host_id === oldIdentity.hostId)
  t.equal(listed?.status, 'removed', 'the old device is listed as removed')
})

t.test('warrenctl nodes rm removes a node by name or host ID; it can no longer renew or heartbeat', async (t) => {
  const gone = await node('pi-gone', 'gone', await auth.token())
  await waitForNode(auth, 'pi-gone', 60_000)
  const identity = loadIdentity(gone.dataDir)!
  const removed = await auth.ctl(['nodes', 'rm', 'pi-gone'])
  t.equal(removed.code, 0, removed.stderr)
  t.equal(removed.stdout, `Node pi-gone (${identity.hostId}, roles node) has been removed: its registration, its name and its presence\n`)
  t.notOk(
    (await registeredHosts()).some((n) => n.host_id === identity.hostId),
    'not listed',
  )
  await until('its tunnel closed', async () => (await webui('pi-gone')).startsWith('failed'), { timeoutMs: 30_000, everyMs: 500 })

  const direct = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
  t.teardown(() => direct.close())
  t.match((await refusal(direct.request('POST', '/v1/heartbeat', {}))).message, 'is not registered in this cluster', 'heartbeats are refused')
  t.match((await refusal(direct.request('POST', '/v1/renew', {}))).message, 'is not registered in this cluster', 'renewals are refused')

  const again = await auth.ctl(['nodes', 'rm', identity.hostId])
  t.equal(again.code, 1)
  t.match(again.stderr, `ERROR: no node "${identity.hostId}" is registered`)
  const byId = await node('pi-by-id', 'by id', await auth.token())
  await waitForNode(auth, 'pi-by-id', 60_000)
  t.equal((await auth.ctl(['nodes', 'rm', loadIdentity(byId.dataDir)!.hostId])).code, 0, 'by host ID')
})

t.test('a join refused for a taken name counts as a failed join', async (t) => {
  const limited = await new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1, per_minute: 1 }' }).start()
  t.teardown(() => limited.stop())
  const limitedPin = await limited.pin()
  const token = await limited.token()
  const attempt = (nodename: string) => joinCluster({ authServer: limited.address, token, caPins: [limitedPin], nodename, roles: ['node'], warn: () => {} })
  await attempt('pi-1')
  await t.rejects(attempt('pi-1'), /nodename "pi-1" is already registered to another node/)
  await t.rejects(attempt('pi-2'), /too many join attempts/)
})
