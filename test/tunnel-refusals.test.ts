// The tunnel port refuses what is not a node of this cluster — no certificate, an expired
// one, one from another CA, the wrong ALPN — and closes garbage without disturbing others,
// as it closes a tunnel whose control stream carries a message it cannot read.

import { connect as tcpConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { AgentTunnel, HeldProxyError } from '../agent/tunnel.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { joinCluster } from '../shared/join.ts'
import { createLogger } from '../shared/log.ts'
import { CLUSTER_SERVER_NAME, heldProxiesAlpn, TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { createCA } from '../shared/x509.ts'
import { createSession } from '../shared/yamux/index.ts'
import { hostCAOf, nodeIdentityFrom } from './helpers/certs.ts'
import { AuthProcess, ProxyProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env: { WARREN_LOG_FORMAT: 'json' } }).start()
t.teardown(() => proxy.stop())
const [host, port] = [proxy.tunnel.slice(0, proxy.tunnel.lastIndexOf(':')), Number(proxy.tunnel.slice(proxy.tunnel.lastIndexOf(':') + 1))]

function tryTunnel(identity: NodeIdentity, hostCAPems: string[], held: string[] = []) {
  return AgentTunnel.open({
    held,
    host,
    port,
    identity: { ...identity, hostCAPems },
    keepAliveIntervalMs: 15_000,
    labels: () => ({}),
    services: [],
    onStream: (s) => s.destroy(),
    log: createLogger('test', { level: 'error' }),
    connectTimeoutMs: 5000,
  })
}

t.test('a valid node tunnel is accepted (the control case)', async (t) => {
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=good-node'])
  t.teardown(() => node.stop())
  t.match(await waitForNode(auth, 'good-node'), /⟵ Tunnel/)
})

t.test('refusals', async (t) => {
  const ca = await hostCAOf(auth)
  const now = Date.now()
  const expired = nodeIdentityFrom(ca, { notBefore: new Date(now - 7200_000), notAfter: new Date(now - 3600_000) })
  await t.rejects(tryTunnel(expired, [ca.certPem]), 'an expired host certificate is refused')
  const refusal = () => proxy.daemon.logEntries().find((entry) => entry.refused !== undefined)
  await proxy.daemon.waitFor('the refusal to be logged', () => refusal() !== undefined, 5000)
  t.match(refusal()!.refused, /expired/i, 'the proxy names the reason: the certificate expired')

  const other = createCA('test-cluster host CA', 'test-cluster')
  const foreign = nodeIdentityFrom(other, { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) })
  await t.rejects(tryTunnel(foreign, [ca.certPem]), 'a certificate from another CA is refused')

  const valid = nodeIdentityFrom(ca, { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) })
  const accepted = await tryTunnel(valid, [ca.certPem])
  accepted.activate()
  t.ok(accepted.proxyId, 'the same kind of certificate, valid, is accepted')
  accepted.close()

  const noCert = await new Promise<string>((resolve) => {
    const socket = tlsConnect({ host, port, ALPNProtocols: ['warren-tunnel'], ca: ca.certPem, checkServerIdentity: () => undefined })
    socket.on('secureConnect', () => socket.write('x'))
    socket.on('close', () => resolve('closed'))
    socket.on('error', () => resolve('closed'))
  })
  t.equal(noCert, 'closed', 'a tunnel client without a certificate is closed')

  const wrongAlpn = await new Promise<string>((resolve) => {
    const socket = tlsConnect({ host, port, ALPNProtocols: ['not-warren'], ca: ca.certPem, cert: valid.tlsCertPem, key: valid.tlsKeyPem, checkServerIdentity: () => undefined })
    socket.on('secureConnect', () => resolve(`connected with ALPN ${socket.alpnProtocol}`))
    socket.on('error', (error) => resolve(`refused: ${error.message}`))
  })
  t.match(wrongAlpn, /refused: .*no.application.protocol/i, 'an unknown ALPN is refused in the handshake')
})

/** A node that joined: the proxy keeps tunnels only of hosts the auth server has registered. */
const joined = async (nodename: string) => joinCluster({ authServer: proxy.web, token: await auth.token(), caPins: [pin], nodename, roles: ['node'], warn: () => {} })

t.test('a dial listing this proxy as held is refused before any key exchange', async (t) => {
  const ca = await hostCAOf(auth)
  const valid = await joined('held-node')
  const first = await tryTunnel(valid, [ca.certPem])
  first.activate()
  t.teardown(() => first.close())
  const proxyId = first.proxyId

  const refused = await tryTunnel(valid, [ca.certPem], ['another-proxy', proxyId]).then(
    () => undefined,
    (error: Error) => error,
  )
  t.ok(refused instanceof HeldProxyError, `the agent learns it reached a proxy it holds (${refused?.message})`)
  const other = await tryTunnel(valid, [ca.certPem], ['another-proxy'])
  t.equal(other.proxyId, proxyId, 'a dial listing only other proxies gets its tunnel')
  other.close()

  // What the refusal costs: no ServerHello, so neither side derived a key or saw a certificate.
  const declined = await new Promise<{ secrets: number; error: string }>((resolve) => {
    let secrets = 0
    const socket = tlsConnect({
      host,
      port,
      ALPNProtocols: ['warren-tunnel', ...heldProxiesAlpn([proxyId])],
      ca: ca.certPem,
      cert: valid.tlsCertPem,
      key: valid.tlsKeyPem,
      checkServerIdentity: () => undefined,
    })
    socket.on('keylog', () => secrets++)
    socket.on('secureConnect', () => resolve({ secrets, error: 'none: connected' }))
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ secrets, error: error.code ?? error.message }))
  })
  t.strictSame(declined, { secrets: 0, error: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' })
  t.ok((await first.ping()) >= 0, 'the tunnel held meanwhile is untouched')
})

t.test('garbage on the port is closed without affecting a live tunnel', async (t) => {
  const ca = await hostCAOf(auth)
  const live = await tryTunnel(await joined('live-node'), [ca.certPem])
  live.activate()
  const garbage = await new Promise<string>((resolve) => {
    const socket = tcpConnect({ host, port }, () => socket.write(Buffer.from('\x00\xffgarbage that is no protocol at all\r\n')))
    socket.on('close', () => resolve('closed'))
    socket.on('error', () => resolve('closed'))
  })
  t.equal(garbage, 'closed')
  t.ok((await live.ping()) >= 0, 'the live tunnel still answers pings')
  live.close()
})

/**
 * A node's tunnel, spoken by hand: the control stream opened, the welcome read, then `line`
 * sent, and a renewal asked for after it. Resolves with what the proxy did: closed the
 * tunnel, or read on and answered the renewal.
 */
async function sendOnControl(identity: NodeIdentity, caPem: string, line: string): Promise<'closed' | 'answered'> {
  const socket = tlsConnect({
    host,
    port,
    ALPNProtocols: [TUNNEL_ALPN],
    servername: CLUSTER_SERVER_NAME,
    ca: caPem,
    cert: identity.tlsCertPem,
    key: identity.tlsKeyPem,
    checkServerIdentity: () => undefined,
  })
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('secureConnect', resolve))
  const session = createSession(socket, { client: true })
  session.on('error', () => {})
  const closed = new Promise<'closed'>((resolve) => session.once('close', () => resolve('closed')))
  const control = session.open()
  control.on('error', () => {})
  let received = ''
  const answered = new Promise<'answered'>((resolve) =>
    control.on('data', (chunk) => {
      received += chunk
      if (/"type":"(certs|renew_failed)"/.test(received)) resolve('answered')
    }),
  )
  await new Promise((resolve) => control.once('data', resolve)) // the welcome
  control.write(`{"type":"hello","version":1,"labels":{},"services":[]}\n${line}\n{"type":"renew"}\n`)
  const outcome = await Promise.race([closed, answered])
  session.close()
  return outcome
}

t.test('a control message the proxy cannot read closes the tunnel, naming the message and field', async (t) => {
  const ca = await hostCAOf(auth)
  const live = await tryTunnel(await joined('bystander'), [ca.certPem])
  live.activate()
  t.teardown(() => live.close())
  const identity = await joined('babbler')
  const refusals = () => proxy.daemon.logEntries().filter((entry) => entry.protocol_error !== undefined)

  t.equal(await sendOnControl(identity, ca.certPem, '{"type":"shutdown","now":true}'), 'closed', 'an unknown type')
  await proxy.daemon.waitFor('the refusal to be logged', () => refusals().length === 1, 5000)
  t.match(refusals()[0], { host_id: identity.hostId, message_type: 'shutdown', field: 'type' })

  t.equal(await sendOnControl(identity, ca.certPem, '{"type":"cert","tls_cert":42}'), 'closed', 'a known type with a malformed field')
  await proxy.daemon.waitFor('the refusal to be logged', () => refusals().length === 2, 5000)
  t.match(refusals()[1], { host_id: identity.hostId, message_type: 'cert', field: 'tls_cert' })

  t.equal(await sendOnControl(identity, ca.certPem, '{"type":"heartbeat","labels":{"env":"lab"}}'), 'answered', 'after a message it knows, the proxy reads on')
  t.equal(refusals().length, 2, 'and refuses nothing')
  t.ok((await live.ping()) >= 0, "another node's tunnel is untouched")
})
