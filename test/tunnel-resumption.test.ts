// A node that reconnects offers the TLS session ticket of its last tunnel, and the proxy
// resumes the session, also after a restart (its ticket key is kept on disk). A resumed
// session skips OpenSSL's checks of the certificate it was made with, so the proxy checks
// it again: a node's or a user's certificate that has expired since is refused.

import { generateKeyPairSync } from 'node:crypto'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { AgentTunnel } from '../agent/tunnel.ts'
import { TunnelPool } from '../agent/tunnel-pool.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { joinCluster } from '../shared/join.ts'
import { createLogger } from '../shared/log.ts'
import { type DialReply, parseDialReply } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { USER_ALPN } from '../shared/protocol/tunnel.ts'
import { createCertificate } from '../shared/x509.ts'
import { authorityOf, hostCAOf, nodeIdentityFrom } from './helpers/certs.ts'
import { AuthProcess, freePort, ProxyProcess } from './helpers/cluster.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const tunnelPort = await freePort()
const proxy = await new ProxyProcess({
  auth,
  token: await auth.token(['tokens', 'add', '--type=proxy']),
  pin,
  webListenAddr: `127.0.0.1:${await freePort()}`,
  tunnelListenAddr: `127.0.0.1:${tunnelPort}`,
  env: { WARREN_LOG_FORMAT: 'json' },
}).start()
t.teardown(() => proxy.stop())
const log = createLogger('test', { level: 'error' })

/** The proxy's host ID, which a resumed session shows no certificate for. */
let proxyId = ''

async function openTunnel(identity: NodeIdentity, session?: Buffer): Promise<AgentTunnel> {
  const tunnel = await AgentTunnel.open({
    host: '127.0.0.1',
    port: tunnelPort,
    identity,
    session,
    sessionProxyId: proxyId,
    keepAliveIntervalMs: 15_000,
    labels: () => ({}),
    services: [],
    onStream: (s) => s.destroy(),
    log,
    connectTimeoutMs: 5000,
  })
  tunnel.activate()
  return tunnel
}

/** Opens a tunnel with a full handshake and waits for a session ticket (the proxy sends them after the handshake). */
async function ticketFrom(identity: NodeIdentity): Promise<{ tunnel: AgentTunnel; ticket: Buffer }> {
  const tunnel = await openTunnel(identity)
  proxyId = tunnel.proxyId
  const ticket = tunnel.ticket ?? (await new Promise<Buffer>((resolve) => tunnel.once('session', resolve)))
  return { tunnel, ticket }
}

/** A node that joined: the proxy keeps tunnels only of hosts the auth server has registered. */
const joined = async (nodename: string) => joinCluster({ authServer: proxy.web, token: await auth.token(), caPins: [pin], nodename, roles: ['node'], warn: () => {} })

t.test('a ticket resumes the session, also after the proxy restarts', async (t) => {
  const identity = await joined('resumer')
  const first = await ticketFrom(identity)
  t.notOk(first.tunnel.resumed, 'the first tunnel makes a full handshake')
  first.tunnel.close()

  const second = await openTunnel(identity, first.ticket)
  t.ok(second.resumed, 'the next one resumes with the ticket')
  t.ok((await second.ping()) >= 0, 'and works')
  second.close()

  const keyFile = join(proxy.dataDir, 'tls-ticket-key.json')
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'the ticket key is readable by the proxy only')
  await proxy.stop()
  await proxy.start()
  const afterRestart = await openTunnel(identity, first.ticket)
  t.ok(afterRestart.resumed, 'a ticket from before the restart still resumes')
  afterRestart.close()
  t.notMatch(proxy.daemon.stderr, /"key"|ticket key [A-Za-z0-9+/=]{20}/, 'the key is not logged')
})

t.test('a resumed session whose certificate has expired since is refused', async (t) => {
  const ca = await hostCAOf(auth)
  const now = Date.now()
  // Valid for a few seconds: OpenSSL accepts it in the first, full handshake.
  const shortLived = nodeIdentityFrom(ca, { notBefore: new Date(now - 60_000), notAfter: new Date(now + 4000) })
  const { tunnel, ticket } = await ticketFrom(shortLived)
  tunnel.close()
  await sleep(Math.max(0, now + 5000 - Date.now()))

  const refusals = () => proxy.daemon.logEntries().filter((entry) => entry.refused !== undefined)
  const before = refusals().length
  await t.rejects(openTunnel(shortLived, ticket), 'the tunnel is refused')
  await proxy.daemon.waitFor('the refusal to be logged', () => refusals().length > before, 5000)
  t.match(refusals().at(-1)!.refused, /^the certificate has expired/)
  t.pass("by the proxy's own check of the resumed certificate (OpenSSL's full check would say CERT_HAS_EXPIRED)")
})

t.test("the tunnel pool keeps each proxy's ticket and resumes with it when the proxy comes back", async (t) => {
  const identity = await joined('pool-resumer')
  const pool = new TunnelPool({
    host: '127.0.0.1',
    port: tunnelPort,
    identity,
    keepAliveIntervalMs: 15_000,
    labels: () => ({}),
    services: [],
    onStream: (s) => s.destroy(),
    log,
    connectTimeoutMs: 5000,
    failureBackoff: { baseMs: 100, capMs: 500 },
  })
  t.teardown(() => pool.stop())
  pool.start()
  const until = async (what: string, check: () => boolean) => {
    const deadline = Date.now() + 15_000
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await sleep(50)
    }
  }
  await until('the first tunnel', () => pool.heldCount === 1)
  t.equal(pool.resumed, 0, 'the first tunnel makes a full handshake')
  await sleep(200) // the proxy's tickets follow the handshake
  await proxy.stop()
  await until('the tunnel to close', () => pool.heldCount === 0)
  await proxy.start()
  await until('the tunnel to return', () => pool.heldCount === 1)
  t.equal(pool.resumed, 1, 'the returning tunnel resumed the session')
})

t.test('a user whose certificate has expired since cannot resume a session either', async (t) => {
  const [userCA, hostCA] = [await authorityOf(auth, 'user'), await hostCAOf(auth)]
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const now = Date.now()
  const certPem = createCertificate({
    subject: { CN: 'alice', O: 'test-cluster', OU: ['user'] },
    issuer: { CN: 'test-cluster user CA', O: 'test-cluster' },
    publicKey,
    signingKey: userCA.key,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 4000),
    extKeyUsage: ['clientAuth'],
  })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  /** Asks for a node that does not exist: a user the proxy accepts hears so; one it refuses hears why. */
  const ask = (session?: Buffer) =>
    new Promise<{ answer: DialReply; resumed: boolean; ticket?: Buffer }>((resolve, reject) => {
      let ticket: Buffer | undefined
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: Number(proxy.web.split(':').pop()),
        ALPNProtocols: [USER_ALPN],
        ca: hostCA.certPem,
        cert: certPem,
        key: keyPem,
        session,
        checkServerIdentity: () => undefined,
      })
      socket.on('session', (s: Buffer) => (ticket = s))
      socket.on('error', reject)
      socket.once('secureConnect', () => {
        writeMessage(socket, { node: 'no-such-node', service: 'ssh' })
        readFirstMessage(socket, parseDialReply).then((answer) => {
          resolve({ answer, resumed: socket.isSessionReused(), ticket })
          socket.destroy()
        }, reject)
      })
    })
  const first = await ask()
  const firstError = first.answer.ok ? '' : first.answer.error
  t.notMatch(firstError, /user certificate/, `a valid user is accepted (${firstError})`)
  t.ok(first.ticket, 'and gets a session ticket')
  await sleep(Math.max(0, now + 5000 - Date.now()))
  const expired = await ask(first.ticket)
  t.ok(expired.resumed, 'the session was resumed')
  t.match(expired.answer, { ok: false, error: /valid user certificate/ }, 'but the expired user is refused')
})
