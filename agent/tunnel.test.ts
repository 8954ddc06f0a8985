// An agent's tunnel against a proxy that speaks out of turn, over real TLS and a real yamux
// session: a control message the agent cannot read closes the tunnel, before the welcome
// (the dial fails, naming the message) and after it; a welcome must name the proxy its
// certificate does.

import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer, type TLSSocket } from 'node:tls'
import t, { type Test } from 'tap'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { createLogger } from '../shared/log.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { createSession } from '../shared/yamux/index.ts'
import { loopbackCert, testCA } from '../test/helpers/certs.ts'
import { until } from '../test/helpers/until.ts'
import { AgentTunnel } from './tunnel.ts'

const ca = testCA('test-cluster host CA', 'test-cluster')
const log = createLogger('test', { level: 'error' })

function certificate(role: string): { cert: string; key: string; hostId: string } {
  const hostId = randomUUID()
  const { certPem, keyPem } = loopbackCert(ca, { CN: hostId, O: 'test-cluster', OU: [role], name: hostId }, ['serverAuth', 'clientAuth'])
  return { cert: certPem, key: keyPem, hostId }
}

const node = certificate('node')
const identity: NodeIdentity = {
  hostId: node.hostId,
  nodename: 'pi',
  clusterName: 'test-cluster',
  roles: ['node'],
  authServers: [],
  tlsKeyPem: node.key,
  tlsCertPem: node.cert,
  sshKeyPem: '',
  sshCert: '',
  hostCAPems: [ca.ca.certPem],
  userCASshKeys: [],
  trustVersion: 0,
}

/** A proxy that answers the agent's control stream with `lines`, given its own host ID. */
async function proxySaying(t: Test, said: (proxyId: string) => string[]): Promise<number> {
  const proxy = certificate('proxy')
  const lines = said(proxy.hostId)
  const server = createServer({ cert: proxy.cert, key: proxy.key, ca: [ca.ca.certPem], requestCert: true, ALPNProtocols: [TUNNEL_ALPN] }, (socket: TLSSocket) => {
    const session = createSession(socket, { client: false })
    session.on('error', () => {})
    session.on('stream', (control: Duplex) => {
      control.on('error', () => {})
      control.write(lines.map((line) => line + '\n').join(''))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return (server.address() as AddressInfo).port
}

const open = (port: number) =>
  AgentTunnel.open({ host: '127.0.0.1', port, identity, keepAliveIntervalMs: 15_000, labels: () => ({}), services: [], onStream: (s) => s.destroy(), log, connectTimeoutMs: 5000 })

t.test('a first message the agent cannot read fails the dial, naming it', async (t) => {
  const port = await proxySaying(t, () => ['{"type":"greetings","proxy_id":"p"}'])
  await t.rejects(open(port), { name: 'ProtocolError', messageType: 'greetings', field: 'type', message: 'unknown control message type "greetings"' })
})

t.test('a welcome naming another proxy than its certificate fails the dial', async (t) => {
  const other = randomUUID()
  let id = ''
  const port = await proxySaying(t, (proxyId) => {
    id = proxyId
    return [`{"type":"welcome","proxy_id":"${other}","cluster_name":"test-cluster"}`]
  })
  await t.rejects(open(port), { message: `the proxy's welcome names ${other}, its certificate ${id}` })
})

t.test('after the welcome, a message the agent cannot read closes the tunnel', async (t) => {
  let id = ''
  const port = await proxySaying(t, (proxyId) => {
    id = proxyId
    return [`{"type":"welcome","proxy_id":"${proxyId}","cluster_name":"test-cluster"}`, `{"type":"proxies","ids":"${proxyId}"}`]
  })
  const tunnel = await open(port)
  t.equal(tunnel.proxyId, id, 'welcomed')
  await until(
    'the tunnel to close',
    () =>
      tunnel.ping().then(
        () => false,
        () => true,
      ),
    { timeoutMs: 10_000, everyMs: 20 },
  )
  t.equal(tunnel.announced, undefined, 'the malformed live set was not taken')
})
