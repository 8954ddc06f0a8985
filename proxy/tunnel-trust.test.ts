// The proxy judges every tunnel again when the trusted host CAs change, with real agents
// (AgentTunnel) over real TLS: a tunnel stays while a certificate its node has shown for
// its key is trusted (the one it opened with, or one it renewed since), and is closed
// when none is.

import { generateKeyPairSync, type KeyObject, randomUUID, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { createServer, type TLSSocket } from 'node:tls'
import t, { type Test } from 'tap'
import { AgentTunnel } from '../agent/tunnel.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { createLogger } from '../shared/log.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { until } from '../test/helpers/until.ts'
import { TunnelServer } from './tunnel-server.ts'
import { type TrustedTunnel, TunnelTrust } from './tunnel-trust.ts'

type CA = ReturnType<typeof createCA>
const oldCA = createCA('test-cluster host CA', 'test-cluster')
const newCA = createCA('test-cluster host CA', 'test-cluster')
const log = createLogger('test', { level: 'error' })

function certificate(ca: CA, commonName: string, role: string, publicKey: KeyObject): string {
  return createCertificate({
    subject: { CN: commonName, O: 'test-cluster', OU: [role], name: commonName },
    issuer: { CN: 'test-cluster host CA', O: 'test-cluster' },
    publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
}

/** A node's keys and its certificate from the old CA; `renew` gives another for the same key. */
function node(): { identity: NodeIdentity; renew: (ca: CA) => string } {
  const hostId = randomUUID()
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const identity: NodeIdentity = {
    hostId,
    nodename: hostId,
    clusterName: 'test-cluster',
    roles: ['node'],
    authServers: [],
    tlsKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    tlsCertPem: certificate(oldCA, hostId, 'node', publicKey),
    sshKeyPem: '',
    sshCert: '',
    hostCAPems: [oldCA.certPem],
    userCASshKeys: [],
    trustVersion: 0,
  }
  return { identity, renew: (ca) => certificate(ca, hostId, 'node', publicKey) }
}

/** A tunnel server behind a real TLS listener that trusts `trusted.pems` (changed by the test). */
async function tunnelServer(t: Test, trusted: { pems: string[] }): Promise<{ tunnels: TunnelServer; port: number }> {
  const proxyId = randomUUID()
  const tunnels = new TunnelServer({ proxyId, clusterName: 'test-cluster', hostCAPems: () => trusted.pems, keepAliveIntervalMs: 15_000, log })
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const cert = certificate(oldCA, proxyId, 'proxy', publicKey)
  const server = createServer(
    {
      cert,
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      ca: [oldCA.certPem, newCA.certPem],
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: [TUNNEL_ALPN],
    },
    (socket: TLSSocket) => tunnels.handle(socket, '127.0.0.1'),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    tunnels.close()
    server.close()
  })
  return { tunnels, port: (server.address() as AddressInfo).port }
}

/** Whether the proxy holds `hostId`'s tunnel by the certificate `pem` (the one renewals present). */
function presents(tunnels: TunnelServer, hostId: string, pem: string): boolean {
  return tunnels.find(hostId)?.cert.fingerprint256 === new X509Certificate(pem).fingerprint256
}

async function connect(t: Test, port: number, identity: NodeIdentity, tunnels: TunnelServer): Promise<{ tunnel: AgentTunnel; open: () => boolean }> {
  const tunnel = await AgentTunnel.open({ host: '127.0.0.1', port, identity, keepAliveIntervalMs: 15_000, labels: () => ({}), services: [], onStream: (s) => s.destroy(), log })
  t.teardown(() => tunnel.close())
  let open = true
  tunnel.once('close', () => (open = false))
  tunnel.activate()
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  return { tunnel, open: () => open }
}

t.test('a host CA rotation keeps the tunnels of nodes that renewed and closes the others', async (t) => {
  const trusted = { pems: [newCA.certPem, oldCA.certPem] }
  const { tunnels, port } = await tunnelServer(t, trusted)
  const follower = node()
  const stale = node()
  const impostor = node()
  const followed = await connect(t, port, follower.identity, tunnels)
  const stayed = await connect(t, port, stale.identity, tunnels)
  const claimed = await connect(t, port, impostor.identity, tunnels)

  const renewed = follower.renew(newCA)
  followed.tunnel.sendCertificate(renewed)
  // A certificate for someone else's key proves nothing about the holder of this tunnel.
  claimed.tunnel.sendCertificate(renewed)
  claimed.tunnel.sendLabels({ sent: 'after the certificate' })
  await until('the renewed certificate to be taken', () => presents(tunnels, follower.identity.hostId, renewed), { timeoutMs: 10_000, everyMs: 10 })
  await until("the impostor's next message", () => tunnels.find(impostor.identity.hostId)?.labels.sent !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  t.ok(presents(tunnels, impostor.identity.hostId, impostor.identity.tlsCertPem), "another node's certificate is not taken")

  trusted.pems = [newCA.certPem]
  tunnels.dropUntrusted()
  await until('the tunnels from the dropped CA to close', () => !stayed.open() && !claimed.open(), { timeoutMs: 10_000, everyMs: 10 })
  t.pass("the node that did not renew and the one that showed another node's certificate are cut")
  t.ok(followed.open(), 'the node that renewed keeps its tunnel')
  t.ok(tunnels.find(follower.identity.hostId), 'and is still routed to')
  t.notOk(tunnels.find(stale.identity.hostId), 'the stale node is not')
})

t.test('a rollback keeps the tunnels of nodes that renewed from the CA it abandons', async (t) => {
  const trusted = { pems: [newCA.certPem, oldCA.certPem] }
  const { tunnels, port } = await tunnelServer(t, trusted)
  const follower = node()
  const followed = await connect(t, port, follower.identity, tunnels)
  const renewed = follower.renew(newCA)
  followed.tunnel.sendCertificate(renewed)
  await until('the renewed certificate to be taken', () => presents(tunnels, follower.identity.hostId, renewed), { timeoutMs: 10_000, everyMs: 10 })

  trusted.pems = [oldCA.certPem]
  tunnels.dropUntrusted()
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.ok(followed.open(), 'the tunnel stays: the certificate it opened with is trusted again')
  t.ok(presents(tunnels, follower.identity.hostId, follower.identity.tlsCertPem), 'and renewals present that one')
})

t.test('a node cannot make the proxy check certificates without end', async (t) => {
  const trusted = { pems: [newCA.certPem, oldCA.certPem] }
  const { tunnels, port } = await tunnelServer(t, trusted)
  const flooder = node()
  const flooding = await connect(t, port, flooder.identity, tunnels)
  for (let i = 0; i < 16; i++) flooding.tunnel.sendCertificate(flooder.renew(oldCA))
  flooding.tunnel.sendCertificate(flooder.renew(newCA))
  flooding.tunnel.sendLabels({ sent: 'after the certificates' })
  await until('the flood to arrive', () => tunnels.find(flooder.identity.hostId)?.labels.sent !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  t.notOk(tunnels.find(flooder.identity.hostId)!.cert.verify(new X509Certificate(newCA.certPem).publicKey), 'the 17th announcement is not taken')
})

t.test('a tunnel that lives through many renewals takes each one; a flood waits its turn', async (t) => {
  let now = Date.now()
  const closed: string[] = []
  const trust = new TunnelTrust<TrustedTunnel>({
    clusterName: 'test-cluster',
    hostCAPems: () => [oldCA.certPem],
    close: (tunnel) => closed.push(tunnel.hostId),
    log,
    clock: () => now,
  })
  t.teardown(() => trust.closed(tunnel))
  const host = node()
  const tunnel: TrustedTunnel = { hostId: host.identity.hostId, nodename: host.identity.nodename, cert: new X509Certificate(host.identity.tlsCertPem) }
  trust.opened(tunnel, tunnel.cert)
  // Forty renewals a minute apart, far more than a tunnel could announce at once.
  for (let i = 0; i < 40; i++) {
    now += 60_000
    const pem = host.renew(oldCA)
    t.equal(trust.renewed(tunnel, pem), true, `renewal ${i + 1} is taken`)
    t.equal(tunnel.cert.fingerprint256, new X509Certificate(pem).fingerprint256)
  }
  now += 60_000
  const flood = Array.from({ length: 20 }, () => trust.renewed(tunnel, host.renew(oldCA)))
  t.equal(flood.filter(Boolean).length, 16, 'sixteen at once, then nothing')
  now += 2000
  t.equal(trust.renewed(tunnel, host.renew(oldCA)), true, 'and one more when its turn comes')
  t.same(closed, [], 'the tunnel stayed open')
})

t.test("a step of the wall clock past a tunnel's certificates closes it at once", async (t) => {
  let now = Date.now()
  const closed: string[] = []
  const trust = new TunnelTrust<TrustedTunnel>({
    clusterName: 'test-cluster',
    hostCAPems: () => [oldCA.certPem],
    close: (tunnel) => closed.push(tunnel.hostId),
    log,
    clock: () => now,
  })
  const host = node()
  const tunnel: TrustedTunnel = { hostId: host.identity.hostId, nodename: host.identity.nodename, cert: new X509Certificate(host.identity.tlsCertPem) }
  t.teardown(() => trust.closed(tunnel))
  trust.opened(tunnel, tunnel.cert)
  // Its certificate ends in an hour; the clock steps two hours on.
  now += 2 * 3_600_000
  trust.clockStepped()
  await until('the tunnel to be closed', () => closed.length > 0, { timeoutMs: 5000, everyMs: 10 })
  t.same(closed, [tunnel.hostId], 'closed: its certificate expired by the clock as it reads now')
})
