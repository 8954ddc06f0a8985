// A user connection is judged by the node's labels when it opens, and again whenever they
// change: the labels the cluster assigns (`warrenctl nodes label`), or the node's own. A
// connection the user's roles no longer allow is closed; one they still allow stays open.
// The proxy's parts are wired as proxy.ts wires them; tunnels are real (TLS and yamux), the
// agent a minimal one, and user connections plain TCP sockets handed to the gateway.

import { generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { type AddressInfo, createServer as createTcpServer, type Socket, connect as tcpConnect } from 'node:net'
import { type Duplex, Writable } from 'node:stream'
import { connect } from 'node:tls'
import t, { type Test } from 'tap'
import type { Access, LabelMatcher } from '../shared/access.ts'
import { x509AccessExtension } from '../shared/access-cert.ts'
import { signAssignedLabels } from '../shared/assigned-labels.ts'
import { createLogger } from '../shared/log.ts'
import { parseProxyMessage, sendToProxy } from '../shared/protocol/control.ts'
import { type DialReply, parseDialRequest } from '../shared/protocol/dial.ts'
import { readFirstMessage, readMessages, writeMessage } from '../shared/protocol/framing.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { createSession } from '../shared/yamux/index.ts'
import { hostCertificate, serveTunnels, tunnelDialer } from '../test/helpers/tunnel-port.ts'
import { until } from '../test/helpers/until.ts'
import { ProxyAssignedLabels } from './assigned-labels.ts'
import { type Tunnel, TunnelServer } from './tunnel-server.ts'
import { UserGateway } from './user-gateway.ts'

const CLUSTER = 'test-cluster'
const ca = createCA('test-cluster host CA', CLUSTER)
const userCA = createCA('users', CLUSTER)
const WAIT = { timeoutMs: 10_000, everyMs: 10 }

/** What roles selecting each of `nodes` allow (login root). */
function access(...nodes: LabelMatcher[]): Access {
  return {
    logins: ['root'],
    nodes,
    deny_nodes: [],
    ports: [],
    deny_ports: [],
    rules: nodes.map((matcher) => ({ nodes: matcher, logins: ['root'], ports: [] })),
    admin: false,
    local_forwarding: true,
    remote_forwarding: false,
    agent_forwarding: false,
  }
}

/** A user certificate carrying `roles`' access, as the auth server issues them. */
function userCert(name: string, roles: Access): X509Certificate {
  const pem = createCertificate({
    subject: { CN: name, O: CLUSTER, OU: ['user'] },
    issuer: { CN: 'users', O: CLUSTER },
    publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    signingKey: userCA.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extKeyUsage: ['clientAuth'],
    extensions: [x509AccessExtension(roles)],
  })
  return new X509Certificate(pem)
}

/** The proxy's parts as proxy.ts wires them, with its log as JSON lines. */
async function proxy(t: Test) {
  const auth = { answer: { generation: '', hosts: [] } as unknown }
  const lines: string[] = []
  const log = createLogger('test', { level: 'warn', format: 'json', stream: new Writable({ write: (chunk, _encoding, done) => done(void lines.push(String(chunk))) }) })
  let tunnels: TunnelServer | undefined
  let users: UserGateway | undefined
  const assigned = new ProxyAssignedLabels({
    fetch: async () => auth.answer,
    clusterName: CLUSTER,
    onChange: (hostIds) => {
      tunnels?.relayAssignedLabels(hostIds)
      void users?.dropRelabelled(hostIds)
    },
    log,
  })
  tunnels = new TunnelServer({ proxyId: randomUUID(), clusterName: CLUSTER, hostCAPems: () => [ca.certPem], keepAliveIntervalMs: 15_000, log })
  const nodes = tunnelDialer(tunnels, assigned, ca, CLUSTER, log)
  users = new UserGateway({ nodes, clusterName: CLUSTER, userCAPems: () => [userCA.certPem], log })
  const gateway = users
  tunnels.on('labels', (tunnel: Tunnel) => void gateway.dropRelabelled([tunnel.hostId]))
  const port = await serveTunnels(t, tunnels, ca, CLUSTER, randomUUID())
  /** The auth server assigns these labels now, and the proxy follows (as its poll of the live set does). */
  const assign = async (generation: string, hostId: string, labels: Record<string, string>) => {
    auth.answer = { generation, hosts: [signAssignedLabels({ cluster_name: CLUSTER, host_id: hostId, labels, changed: Date.now() }, [{ certPem: ca.certPem, key: ca.key }])] }
    await assigned.follow(generation)
  }
  const logged = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  return { tunnels, users: gateway, assign, logged, port }
}

/**
 * A minimal agent: says hello with `labels`, and answers each dial with ok once `answer`
 * lets it (at once by default); `relabel` reports new labels of its own, as a heartbeat does.
 */
async function agent(t: Test, port: number, labels: Record<string, string>) {
  const hostId = randomUUID()
  const { cert, key } = hostCertificate(ca, CLUSTER, hostId, 'node')
  const socket = connect({ host: '127.0.0.1', port, cert, key, ca: [ca.certPem], ALPNProtocols: [TUNNEL_ALPN], checkServerIdentity: () => undefined })
  await once(socket, 'secureConnect')
  const session = createSession(socket, { client: true, keepAliveIntervalMs: 15_000 })
  session.on('error', () => {})
  const streams: Duplex[] = []
  const state = { answer: async () => {} }
  session.on('stream', (stream: Duplex) => {
    stream.on('error', () => {})
    void readFirstMessage(stream, parseDialRequest).then(
      async () => {
        streams.push(stream)
        await state.answer()
        writeMessage(stream, { ok: true })
      },
      () => stream.destroy(),
    )
  })
  const control = session.open()
  readMessages(control, parseProxyMessage, (message) => {
    if (message.type === 'welcome') sendToProxy(control, { type: 'hello', version: 1, labels })
  })
  t.teardown(() => session.close())
  const relabel = (labels: Record<string, string>) => sendToProxy(control, { type: 'heartbeat', labels })
  return { hostId, streams, state, relabel }
}

/** A user's connection: the proxy's side, served by the gateway, and the user's side. */
async function userConnection(t: Test): Promise<{ proxySide: Socket; userSide: Socket }> {
  const server = createTcpServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const userSide = tcpConnect((server.address() as AddressInfo).port, '127.0.0.1')
  userSide.on('error', () => {})
  // Read, so that its close is seen after the gateway's answer.
  userSide.resume()
  const proxySide = await accepted
  t.teardown(() => {
    userSide.destroy()
    server.close()
  })
  return { proxySide, userSide }
}

/**
 * `name` connects over SSH to `node` through the gateway: a plain stream (as fdpass streams
 * are served, ssh-stream-gateway.ts) or a TLS connection's (the answer written on the socket).
 */
async function ssh(t: Test, users: UserGateway, name: string, roles: Access, node: string, plain: boolean) {
  const { proxySide, userSide } = await userConnection(t)
  const replies: DialReply[] = []
  const served = users.serve(
    proxySide,
    userCert(name, roles),
    name,
    '192.0.2.1',
    { node, service: 'ssh', name: undefined, certificate: undefined, proof: undefined },
    plain ? { answer: (reply) => replies.push(reply) } : undefined,
  )
  const closed = new Promise<void>((resolve) => userSide.once('close', () => resolve()))
  return { proxySide, userSide, replies, served, closed }
}

const isOpen = (socket: Socket) => !socket.destroyed && !socket.closed

t.test('an admin assigns a label: connections the roles no longer allow close, others stay open', async (t) => {
  const { tunnels, users, assign, logged, port } = await proxy(t)
  const node = await agent(t, port, { site: 'kitchen' })
  await until('the tunnel', () => tunnels.byHostId(node.hostId) !== undefined, WAIT)
  await assign('g1', node.hostId, { env: 'lab' })

  const lena = await ssh(t, users, 'lena', access({ env: ['lab'] }), node.hostId, true)
  await lena.served
  const bea = await ssh(t, users, 'bea', access({ env: ['lab'] }, { env: ['prod'] }), node.hostId, false)
  await bea.served
  const kim = await ssh(t, users, 'kim', access({ site: ['kitchen'] }), node.hostId, true)
  await kim.served
  t.same(lena.replies, [{ ok: true }], 'lena (env=lab) reaches it, over a plain stream')
  t.same(kim.replies, [{ ok: true }], 'kim (site=kitchen) too')
  t.equal(users.sessions, 3)
  t.equal(node.streams.length, 3)

  await assign('g2', node.hostId, { env: 'prod' })
  await lena.closed
  t.pass("lena's connection is closed")
  await until("the node's stream of lena's connection to close", () => node.streams[0]!.destroyed, WAIT)
  t.ok(isOpen(bea.proxySide) && isOpen(bea.userSide), 'bea, whose roles select env=prod too, keeps hers')
  t.ok(isOpen(kim.proxySide), 'kim, whose role selects a label that did not change, keeps his')
  t.notOk(node.streams[1]!.destroyed || node.streams[2]!.destroyed, 'and their streams to the node stay open')
  t.equal(users.sessions, 2)
  t.match(
    logged().filter((entry) => entry.access_denied === true),
    [{ user: 'lena', node: node.hostId, access_denied: true, reason: String }],
    'the closing is logged as a refusal is',
  )

  await assign('g3', node.hostId, { env: 'prod', rack: '2' })
  t.equal(users.sessions, 2, 'labels the roles still allow close nothing')
  t.ok(isOpen(bea.proxySide) && isOpen(kim.proxySide))
})

t.test("a node's own labels change: connections they no longer allow close", async (t) => {
  const { tunnels, users, port } = await proxy(t)
  const node = await agent(t, port, { env: 'lab', site: 'kitchen' })
  await until('the tunnel', () => tunnels.byHostId(node.hostId) !== undefined, WAIT)
  const kim = await ssh(t, users, 'kim', access({ site: ['kitchen'] }), node.hostId, false)
  await kim.served
  const lena = await ssh(t, users, 'lena', access({ env: ['lab'] }), node.hostId, false)
  await lena.served
  t.equal(users.sessions, 2)

  node.relabel({ env: 'lab', site: 'garage' })
  await kim.closed
  t.pass("kim's connection is closed: the node no longer says site=kitchen")
  t.ok(isOpen(lena.proxySide), "lena's stays open")
  t.equal(users.sessions, 1)
})

t.test('a connection whose stream is being opened when the labels change is judged too', async (t) => {
  const { tunnels, users, assign, port } = await proxy(t)
  const node = await agent(t, port, {})
  await until('the tunnel', () => tunnels.byHostId(node.hostId) !== undefined, WAIT)
  await assign('g1', node.hostId, { env: 'lab' })
  let answer = () => {}
  node.state.answer = () => new Promise<void>((resolve) => (answer = resolve))
  const lena = await ssh(t, users, 'lena', access({ env: ['lab'] }), node.hostId, true)
  await until('the node to be asked', () => node.streams.length === 1, WAIT)

  await assign('g2', node.hostId, { env: 'prod' })
  await lena.closed
  answer()
  await lena.served
  t.same(lena.replies, [], 'never answered ok')
  await until("the node's stream to close", () => node.streams[0]!.destroyed, WAIT)
  t.equal(users.sessions, 0)
})
