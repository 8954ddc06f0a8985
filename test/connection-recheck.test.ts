// Connections are judged again after they open: an identity whose certificate expired, or
// whose CA a completed rotation dropped, loses what the certificate granted, also on a
// connection opened before. Performed as attacks against a real auth server and proxy
// (started with the CLI): an admin on a keep-alive connection, a user connected through
// the gateway, a node that did not follow a host CA rotation, a node whose certificate
// expired. Identities that followed the rotation lose nothing.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { Agent as HttpsAgent, request } from 'node:https'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TLSSocket } from 'node:tls'
import t from 'tap'
import { Agent } from '../agent/agent.ts'
import { AgentTunnel } from '../agent/tunnel.ts'
import { dialThroughProxy } from '../cli/ssh.ts'
import { issuedByAny } from '../shared/cert-subject.ts'
import { defaultConfig } from '../shared/config.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { joinCluster } from '../shared/join.ts'
import { createLogger } from '../shared/log.ts'
import { createCertificate } from '../shared/x509.ts'
import { authorityOf, hostCAOf } from './helpers/certs.ts'
import { AuthProcess, ProxyProcess, tempDir } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())
const log = createLogger('test', { level: 'error' })

// A node that follows rotations as every agent does: the target of user connections.
const follower = new Agent({
  config: { ...defaultConfig(), dataDir: tempDir(), nodename: 'follower', authToken: await auth.token(), caPins: [pin], authServers: [proxy.web] },
  log: createLogger('follower', { level: 'info', stream: new Writable({ write: (_chunk, _enc, done) => done() }) }),
})
await follower.start()
t.teardown(() => follower.stop())
await until('the follower to hold its tunnel', () => follower.pool!.heldCount === 1, { timeoutMs: 30_000 })

async function rotate(type: 'host' | 'user', phase: string): Promise<void> {
  const result = await auth.ctl(['auth', 'rotate', `--type=${type}`, '--manual', `--phase=${phase}`])
  if (result.code !== 0) throw new Error(`rotate ${type} ${phase}: ${result.stderr}`)
}

/** The CAs the auth server trusts now (the signing one first). */
async function trusted(type: 'host' | 'user'): Promise<string[]> {
  const ca = await auth.api<{ host_ca_certs: string[]; user_ca_certs: string[] }>('GET', '/v1/ca')
  return type === 'host' ? ca.host_ca_certs : ca.user_ca_certs
}

async function tokenIds(): Promise<string[]> {
  return (await auth.api<{ tokens: { id: string }[] }>('GET', '/v1/tokens')).tokens.map((token) => token.id).sort()
}

interface Answer {
  status: number
  /** The request went over a connection that an earlier request had used. */
  reused: boolean
  socket: Socket
}

/**
 * An admin client that holds one keep-alive connection for all its requests, as a script
 * with an HTTPS library would, with its own certificate.
 */
function adminClient(certPem: string, keyPem: string) {
  const identity = JSON.parse(readFileSync(auth.identityPath, 'utf8'))
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: identity.host_ca_certs, cert: certPem, key: keyPem, checkServerIdentity: () => undefined })
  const call = (method: string, path: string, body?: unknown) =>
    new Promise<Answer>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body)
      const req = request(`https://${auth.address}${path}`, { method, agent, headers: payload ? { 'content-type': 'application/json' } : {} }, (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, socket: req.socket! }))
      })
      req.on('error', reject)
      req.end(payload)
    })
  // The auth server closes a connection idle for 5 s: a request every second keeps it.
  let stopped = false
  const kept = (async () => {
    while (!stopped) {
      await call('GET', '/v1/health').catch(() => {})
      await sleep(1000)
    }
  })()
  return {
    call,
    close: async () => {
      stopped = true
      await kept
      agent.destroy()
    },
  }
}

/** An admin certificate from the user CA that signs now, valid until `notAfter`. */
async function adminCertificate(notAfter: Date): Promise<{ certPem: string; keyPem: string }> {
  const userCA = await authorityOf(auth, 'user')
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: { CN: 'admin', O: 'test-cluster', OU: ['admin'] },
    issuer: { CN: 'test-cluster user CA', O: 'test-cluster' },
    publicKey,
    signingKey: userCA.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter,
    extKeyUsage: ['clientAuth'],
  })
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

/** A user connection through the proxy's gateway to the follower's SSH server, its banner read. */
async function userConnection(profile: string): Promise<TLSSocket> {
  const socket = await dialThroughProxy({ identity: profile }, 'follower', { service: 'ssh' })
  socket.on('error', () => {})
  const [banner] = await once(socket, 'data')
  if (!String(banner).startsWith('SSH-2.0')) throw new Error(`not an SSH server: ${banner}`)
  return socket
}

async function signUser(name: string): Promise<string> {
  await auth.ctl(['users', 'add', name, '--logins=nobody'])
  const profile = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', `--user=${name}`, '--ttl=1h', `--out=${profile}`, `--proxy=${proxy.web}`])
  if (signed.code !== 0) throw new Error(`auth sign ${name}: ${signed.stderr}`)
  return profile
}

const closed = (socket: { destroyed: boolean }) => socket.destroyed

t.test('an admin certificate that expires on a keep-alive connection loses its rights at the next request', async (t) => {
  // X.509 dates have whole seconds: this one runs out 3 to 4 s from now.
  const notAfter = new Date(Date.now() + 4000)
  const { certPem, keyPem } = await adminCertificate(notAfter)
  const admin = adminClient(certPem, keyPem)
  t.teardown(() => admin.close())
  const before = await admin.call('GET', '/v1/tokens')
  t.equal(before.status, 200, 'the admin lists tokens while its certificate is valid')
  const tokens = await tokenIds()

  await sleep(Math.max(0, new X509Certificate(certPem).validToDate.getTime() + 1200 - Date.now()))
  const after = await admin.call('POST', '/v1/tokens', { roles: 'node,proxy', ttl_ms: 3_600_000 })
  t.equal(after.socket, before.socket, 'the same connection')
  t.ok(after.reused, 'reused for the request after the expiry')
  t.equal(after.status, 403, 'the expired admin certificate mints no token')
  t.same(await tokenIds(), tokens, 'the token list is unchanged')
})

t.test('a completed user CA rotation closes the connections its dropped CA authenticated', async (t) => {
  const oldCA = (await trusted('user'))[0]
  // An admin identity from the CA about to be dropped, on a keep-alive connection.
  const { certPem, keyPem } = await adminCertificate(new Date(Date.now() + 3_600_000))
  const admin = adminClient(certPem, keyPem)
  t.teardown(() => admin.close())
  const first = await admin.call('GET', '/v1/tokens')
  t.equal(first.status, 200, 'the admin lists tokens')
  const second = await admin.call('GET', '/v1/tokens')
  t.ok(second.reused && second.socket === first.socket, 'over one keep-alive connection')
  // A user connected through the gateway with a certificate from the same CA.
  const oldUser = await userConnection(await signUser('old-alice'))

  await rotate('user', 'init')
  await rotate('user', 'update_clients')
  const newUserProfile = await signUser('new-bob')
  // The proxy trusts the new CA from its next heartbeat on.
  let newUser: TLSSocket | undefined
  await until(
    'a user with a certificate from the new CA to connect',
    async () => {
      newUser = await userConnection(newUserProfile).catch(() => undefined)
      return newUser !== undefined
    },
    { timeoutMs: 20_000, everyMs: 500 },
  )
  t.ok(issuedByAny(new X509Certificate(readFileSync(join(newUserProfile, 'tls.crt'), 'utf8')), [(await trusted('user'))[0]]), "the new user's certificate is from the new CA")
  const tokens = await tokenIds()
  await rotate('user', 'update_servers')
  await rotate('user', 'standby')
  t.notOk((await trusted('user')).includes(oldCA), 'the old user CA is dropped')

  await until("the auth server to close the admin's connection", () => closed(first.socket), { timeoutMs: 10_000, everyMs: 50 })
  t.pass("the auth server closed the admin's keep-alive connection")
  const attempt = await admin.call('POST', '/v1/tokens', { roles: 'node,proxy', ttl_ms: 3_600_000 }).catch((error: Error) => error)
  t.ok(
    attempt instanceof Error || attempt.status === 401 || attempt.status === 403,
    `no join token for the dropped admin (${attempt instanceof Error ? attempt.message : attempt.status})`,
  )
  t.same(await tokenIds(), tokens, 'the token list is unchanged')

  await until('the proxy to close the user connection made with the dropped CA', () => closed(oldUser), { timeoutMs: 20_000, everyMs: 50 })
  t.pass('the proxy closed the user connection made with the dropped CA')
  await sleep(500)
  t.notOk(closed(newUser!), 'the user with a certificate from the new CA stays connected')
  newUser!.destroy()
})

t.test('a tunnel whose node certificate expires is closed', async (t) => {
  // A node that joined (proxies close the tunnels of hosts the auth server does not know),
  // holding a certificate for its own key that lives 4 s.
  const joined = await joinCluster({ authServer: proxy.web, token: await auth.token(), caPins: [pin], nodename: 'short-lived', roles: ['node'], warn: () => {} })
  const ca = await hostCAOf(auth)
  const now = Date.now()
  const tlsCertPem = createCertificate({
    subject: { CN: joined.hostId, O: joined.clusterName, OU: ['node'], name: joined.nodename },
    issuer: { CN: `${joined.clusterName} host CA`, O: joined.clusterName },
    publicKey: new X509Certificate(joined.tlsCertPem).publicKey,
    signingKey: ca.key,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 4000),
    extKeyUsage: ['clientAuth', 'serverAuth'],
  })
  const identity: NodeIdentity = { ...joined, tlsCertPem }
  const tunnel = await openTunnel(identity)
  t.teardown(() => tunnel.close())
  let open = true
  tunnel.once('close', () => (open = false))
  await sleep(500)
  t.ok(open, 'open while the certificate is valid')
  await until('the proxy to close the tunnel', () => !open, { timeoutMs: 15_000, everyMs: 50 })
  t.ok(Date.now() >= new X509Certificate(identity.tlsCertPem).validToDate.getTime(), 'closed once the certificate expired')
  await t.rejects(dialThroughProxy({ identity: await signUser('carol') }, identity.nodename, { service: 'ssh' }), /not connected/, 'no user is routed to it')
})

t.test('a completed host CA rotation closes the tunnel of a node that did not follow it, not those of nodes that did', async (t) => {
  // A node that joined like any other but ignores the rotation (it never renews).
  const stale = await joinCluster({ authServer: proxy.web, token: await auth.token(), caPins: [pin], nodename: 'stale', roles: ['node'], warn: () => {} })
  const staleTunnel = await openTunnel(stale)
  t.teardown(() => staleTunnel.close())
  let staleOpen = true
  staleTunnel.once('close', () => (staleOpen = false))
  let followerCloses = 0
  for (const tunnel of follower.pool!.all) tunnel.on('close', () => followerCloses++)
  const profile = await signUser('dave')
  t.equal(await reaches(profile, 'stale'), 'reached', 'users reach the stale node before the rotation')

  await rotate('host', 'init')
  await until('the follower to trust both CAs', () => follower.identity.hostCAPems.length === 2, { timeoutMs: 20_000 })
  await rotate('host', 'update_clients')
  const signing = (await trusted('host'))[0]
  await until('the follower to renew', () => issuedByAny(new X509Certificate(follower.identity.tlsCertPem), [signing]), { timeoutMs: 20_000 })
  await rotate('host', 'update_servers')
  await rotate('host', 'standby')
  t.same(await trusted('host'), [signing], 'the old host CA is dropped')

  await until("the proxy to close the stale node's tunnel", () => !staleOpen, { timeoutMs: 20_000, everyMs: 50 })
  t.pass("the proxy closed the stale node's tunnel")
  // A user profile trusts the host CAs of when it was signed: one from after the rotation.
  const renewedProfile = await signUser('erin')
  t.equal(await reaches(renewedProfile, 'stale'), 'refused', 'no user is routed to the stale node')
  t.equal(followerCloses, 0, 'the follower lost no tunnel')
  t.equal(follower.pool!.heldCount, 1, 'and holds its tunnel')
  t.equal(await reaches(renewedProfile, 'follower'), 'reached', 'users still reach the follower')
})

/** Opens a tunnel to the proxy with `identity` and says hello: the proxy routes users to it. */
async function openTunnel(identity: NodeIdentity): Promise<AgentTunnel> {
  const [host, port] = proxy.tunnel.split(':')
  const tunnel = await AgentTunnel.open({
    host,
    port: Number(port),
    identity,
    keepAliveIntervalMs: 15_000,
    labels: () => ({}),
    services: ['ssh'],
    onStream: (stream) => stream.end('{"ok":true}\n'),
    log,
    connectTimeoutMs: 5000,
  })
  tunnel.activate()
  return tunnel
}

/** Whether a user connection through the gateway reaches `node`'s SSH server, or is refused. */
async function reaches(profile: string, node: string): Promise<'reached' | 'refused'> {
  try {
    const socket = await dialThroughProxy({ identity: profile }, node, { service: 'ssh' })
    socket.destroy()
    return 'reached'
  } catch {
    return 'refused'
  }
}
