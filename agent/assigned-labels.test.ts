// The labels the cluster assigns to a node, on the node: a statement signed by a host CA it
// trusts, for it, and newer than the one it holds is taken and kept on disk; any other
// changes nothing (one a proxy forged, or replayed, included) and leaves the tunnel up; and
// users' roles are judged against its own labels with the assigned ones winning.

import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer, type TLSSocket } from 'node:tls'
import t from 'tap'
import { type Access, loginRefusal, nodeRefusal } from '../shared/access.ts'
import { sshAccessExtensions } from '../shared/access-cert.ts'
import { type AssignedLabelsStatement, signAssignedLabels } from '../shared/assigned-labels.ts'
import { defaultConfig } from '../shared/config.ts'
import { loadIdentity, type NodeIdentity, saveIdentity } from '../shared/identity-store.ts'
import { createLogger } from '../shared/log.ts'
import { PortProofs, signPortRequest } from '../shared/port-request-proof.ts'
import { type AgentMessage, parseAgentMessage, sendToAgent } from '../shared/protocol/control.ts'
import { readMessages } from '../shared/protocol/framing.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { createSshCertificate } from '../shared/ssh-cert.ts'
import { createSession } from '../shared/yamux/index.ts'
import { loopbackCert, testCA } from '../test/helpers/certs.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { until } from '../test/helpers/until.ts'
import { Agent } from './agent.ts'
import { NodeAssignedLabels, REFUSED_LOG_MS } from './assigned-labels.ts'
import { judgePortAccess } from './port-access.ts'
import { AgentTunnel } from './tunnel.ts'

const hostCA = testCA('c1 host CA', 'c1')
const stranger = testCA('c1 host CA', 'c1')
const signers = [{ certPem: hostCA.ca.certPem, key: hostCA.ca.key }]

function certificate(role: string): { cert: string; key: string; hostId: string } {
  const hostId = randomUUID()
  const { certPem, keyPem } = loopbackCert(hostCA, { CN: hostId, O: 'c1', OU: [role], name: hostId }, ['serverAuth', 'clientAuth'])
  return { cert: certPem, key: keyPem, hostId }
}

const node = certificate('node')
const newIdentity = (): NodeIdentity => ({
  hostId: node.hostId,
  nodename: 'pi-1',
  clusterName: 'c1',
  roles: ['node'],
  authServers: ['proxy.example.com:3080'],
  tlsKeyPem: node.key,
  tlsCertPem: node.cert,
  sshKeyPem: 'ssh key\n',
  sshCert: 'ssh cert\n',
  hostCAPems: [hostCA.ca.certPem],
  userCASshKeys: [],
  trustVersion: 1,
})

const statement = (fields: Partial<Omit<AssignedLabelsStatement, 'signatures'>> = {}, by = signers): AssignedLabelsStatement =>
  signAssignedLabels({ cluster_name: 'c1', host_id: node.hostId, labels: { env: 'lab' }, changed: 1000, ...fields }, by)

interface Held {
  assigned: NodeAssignedLabels
  identity: NodeIdentity
  own: Record<string, string>
  dataDir: string
  warnings: Record<string, unknown>[]
  advance: (ms: number) => void
}

/** A node's assigned labels, its identity saved in a fresh data dir, its log's warnings kept, on a clock the test moves. */
function held(own: Record<string, string> = { env: 'prod' }): Held {
  const dataDir = tempDir()
  const identity = newIdentity()
  saveIdentity(dataDir, identity)
  const warnings: Record<string, unknown>[] = []
  const stream = {
    write: (line: string) => {
      const entry = JSON.parse(line) as Record<string, unknown>
      if (entry.level === 'warn') warnings.push(entry)
      return true
    },
  } as unknown as NodeJS.WritableStream
  const log = createLogger('node', { level: 'info', stream, format: 'json' })
  let now = 0
  const state: Held = { identity, own, dataDir, warnings, advance: (ms) => (now += ms), assigned: undefined as unknown as NodeAssignedLabels }
  state.assigned = new NodeAssignedLabels({ identity: () => state.identity, ownLabels: () => state.own, dataDir, log, clock: () => now })
  return state
}

t.test('a statement for this host, signed by a host CA it trusts, is taken and kept on disk', async (t) => {
  const h = held()
  t.equal(h.assigned.receive(undefined, 'proxy p'), false, 'an answer without one changes nothing')
  t.equal(h.identity.assignedLabels, undefined)
  t.equal(h.assigned.receive(statement(), 'proxy p'), true)
  t.same(h.identity.assignedLabels, { labels: { env: 'lab' }, changed: 1000 })
  t.same(loadIdentity(h.dataDir)?.assignedLabels, { labels: { env: 'lab' }, changed: 1000 }, 'saved: a restart holds them')
  t.same(h.assigned.judged(), { env: 'lab' }, 'the assigned label wins over its own of the same key')

  // take() leaves the save to the caller (a renewal's answer is saved with its certificates).
  t.equal(h.assigned.take(statement({ labels: { env: 'lab', site: 'north' }, changed: 2000 }), 'the renewal answer'), true)
  t.same(loadIdentity(h.dataDir)?.assignedLabels?.changed, 1000, 'take() alone does not save')
  saveIdentity(h.dataDir, h.identity)

  // Removed by the cluster: an empty set, newer; the node's own labels count again.
  t.equal(h.assigned.receive(statement({ labels: {}, changed: 3000 }), 'proxy p'), true)
  t.same(h.assigned.judged(), { env: 'prod' })
  t.same(loadIdentity(h.dataDir)?.assignedLabels, { labels: {}, changed: 3000 })
  t.equal(h.assigned.refused, 0)
  t.same(h.warnings, [])
})

t.test('statements for another host or cluster, signed by an untrusted key, or older, change nothing', async (t) => {
  const h = held()
  t.ok(h.assigned.receive(statement({ changed: 5000 }), 'proxy p'))
  const before = { ...h.identity.assignedLabels }
  const onDisk = () => loadIdentity(h.dataDir)?.assignedLabels
  const forged = statement({ labels: { env: 'prod' }, changed: 9000 })
  const cases: [string, AssignedLabelsStatement, RegExp | undefined][] = [
    ["another host's", statement({ host_id: randomUUID(), labels: { env: 'prod' }, changed: 9000 }), /for host/],
    ["another cluster's", statement({ cluster_name: 'c2', labels: { env: 'prod' }, changed: 9000 }), /for cluster "c2"/],
    ['signed by a key it does not trust', statement({ labels: { env: 'prod' }, changed: 9000 }, [{ certPem: stranger.ca.certPem, key: stranger.ca.key }]), /no host CA/],
    ['changed under its signature', { ...forged, labels: { env: 'prod', role: 'db' } }, /no host CA/],
    ['older than the one held (a replay)', statement({ labels: { env: 'prod' }, changed: 4000 }), undefined],
    ['as old as the one held', statement({ labels: { env: 'prod' }, changed: 5000 }), undefined],
  ]
  for (const [name, s, reason] of cases) {
    h.advance(REFUSED_LOG_MS)
    const warned = h.warnings.length
    t.equal(h.assigned.receive(s, 'proxy p'), false, name)
    t.same(h.identity.assignedLabels, before, `${name}: nothing held changed`)
    t.same(onDisk(), before, `${name}: nothing on disk changed`)
    t.same(h.assigned.judged(), { env: 'lab' }, `${name}: the judgment stands`)
    if (reason) t.match(h.warnings.slice(warned), [{ msg: /assigned labels from proxy p refused/, assigned_labels_refused: reason, from: 'proxy p' }], `${name}: logged at WARN`)
    else t.equal(h.warnings.length, warned, `${name}: not a refusal, nothing logged`)
  }
  t.equal(h.assigned.refused, 4)
})

t.test('refusals are logged at most once a minute, and all counted', async (t) => {
  const h = held()
  const forged = statement({ host_id: randomUUID() })
  for (let i = 0; i < 5; i++) h.assigned.receive(forged, 'proxy p')
  t.equal(h.warnings.length, 1)
  h.advance(REFUSED_LOG_MS - 1)
  h.assigned.receive(forged, 'proxy p')
  t.equal(h.warnings.length, 1)
  h.advance(1)
  h.assigned.receive(forged, 'proxy p')
  t.equal(h.warnings.length, 2)
  t.equal(h.assigned.refused, 7)
  t.equal(h.warnings[1]?.assigned_labels_refused_count, 7)
})

// Users' roles, judged as the SSH server (nodeRefusal, loginRefusal) and port access do.
const userCA = generateKeyPairSync('ed25519')
const userKey = generateKeyPairSync('ed25519')
const prodOnly: Access = {
  logins: ['pi'],
  nodes: [{ env: ['prod'] }],
  deny_nodes: [],
  ports: ['webui'],
  deny_ports: [],
  rules: [{ nodes: { env: ['prod'] }, logins: ['pi'], ports: ['webui'] }],
  admin: false,
  local_forwarding: true,
  remote_forwarding: false,
  agent_forwarding: false,
}
const prodCertificate = createSshCertificate({
  publicKey: userKey.publicKey,
  caKey: userCA.privateKey,
  type: 'user',
  keyId: 'alice',
  principals: ['pi'],
  validAfter: new Date(Date.now() - 3_600_000),
  validBefore: new Date(Date.now() + 3_600_000),
  extensions: sshAccessExtensions(prodOnly),
})

function judged(labels: Record<string, string>) {
  const at = Date.now()
  const port = judgePortAccess({
    certificate: prodCertificate,
    proof: signPortRequest(userKey.privateKey, { cluster: 'c1', node: 'pi-1', port: 'webui' }, at),
    proofs: new PortProofs(() => at),
    node: { cluster: 'c1', names: ['pi-1', node.hostId] },
    port: 'webui',
    trustedCaKeys: [userCA.publicKey],
    labels,
  })
  return { ssh: nodeRefusal(prodOnly, labels) ?? loginRefusal(prodOnly, 'pi', labels) ?? 'allowed', port: port.allowed ? 'allowed' : port.reason }
}

t.test('a role that allows env=prod is refused where the cluster assigned env=lab, whatever the node says of itself', async (t) => {
  const h = held({ env: 'prod' })
  t.same(judged(h.assigned.judged()), { ssh: 'allowed', port: 'allowed' }, 'before any assignment, its own labels count')
  h.assigned.receive(statement({ labels: { env: 'lab' } }), 'proxy p')
  t.same(judged(h.assigned.judged()), { ssh: "the user's roles do not allow this node", port: "the user's roles do not allow this node" })
  // A reload of its config (SIGHUP) changes its own labels, not the merge.
  h.own = { env: 'prod', site: 'north' }
  t.same(h.assigned.judged(), { env: 'lab', site: 'north' })
  t.same(judged(h.assigned.judged()).ssh, "the user's roles do not allow this node", 'after a reload, still refused')
})

t.test('and allowed the other way: the node says env=lab, the cluster assigned env=prod', async (t) => {
  const h = held({ env: 'lab' })
  t.same(judged(h.assigned.judged()).ssh, "the user's roles do not allow this node")
  h.assigned.receive(statement({ labels: { env: 'prod' } }), 'proxy p')
  t.same(judged(h.assigned.judged()), { ssh: 'allowed', port: 'allowed' })
})

t.test('the agent judges by the merge, holds it across a restart, and reports its own labels', async (t) => {
  const dataDir = tempDir()
  const config = { ...defaultConfig(), dataDir, labels: { env: 'prod' } }
  const agent = new Agent({ config, log: createLogger('node', { level: 'error' }) })
  agent.identity = newIdentity()
  t.same(agent.judgedLabels, { env: 'prod' })
  t.ok(agent.assignedLabels.receive(statement({ labels: { env: 'lab' } }), 'proxy p'))
  t.same(agent.judgedLabels, { env: 'lab' })
  t.same(agent.config.labels, { env: 'prod' }, 'its own labels, which it reports, are as configured')
  // What a reload does to the labels.
  agent.config.labels = { env: 'prod', site: 'north' }
  t.same(agent.judgedLabels, { env: 'lab', site: 'north' })

  const restarted = new Agent({ config: { ...config }, log: createLogger('node', { level: 'error' }) })
  restarted.identity = loadIdentity(dataDir)!
  t.same(restarted.judgedLabels, { env: 'lab', site: 'north' }, 'a restarted node judges by what it held')
})

t.test('through a tunnel: the hello says the agent takes labels; a forged statement leaves the tunnel up', async (t) => {
  const proxy = certificate('proxy')
  const hellos: AgentMessage[] = []
  let control: Duplex | undefined
  const server = createServer({ cert: proxy.cert, key: proxy.key, ca: [hostCA.ca.certPem], requestCert: true, ALPNProtocols: [TUNNEL_ALPN] }, (socket: TLSSocket) => {
    const session = createSession(socket, { client: false })
    session.on('error', () => {})
    session.on('stream', (stream: Duplex) => {
      control = stream
      stream.on('error', () => {})
      readMessages(stream, parseAgentMessage, (message) => {
        if (message.type === 'hello') hellos.push(message)
      })
      sendToAgent(stream, { type: 'welcome', proxy_id: proxy.hostId, cluster_name: 'c1' })
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const h = held({ env: 'prod' })
  const tunnel = await AgentTunnel.open({
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    identity: h.identity,
    keepAliveIntervalMs: 15_000,
    labels: () => h.own,
    services: [],
    onStream: (s) => s.destroy(),
    log: createLogger('test', { level: 'error' }),
    connectTimeoutMs: 5000,
  })
  t.teardown(() => tunnel.close())
  tunnel.on('labels', (message) => h.assigned.receive(message.assigned, `proxy ${tunnel.proxyId}`))
  tunnel.activate()
  await until('the hello', () => hellos.length === 1)
  t.match(hellos[0], { type: 'hello', assigned_labels: true, labels: { labels: { env: 'prod' } } }, 'its own labels reported, and that it takes assigned ones')

  sendToAgent(control!, { type: 'labels', assigned: statement({ host_id: randomUUID(), labels: { env: 'prod-forged' }, changed: 9000 }) })
  sendToAgent(control!, { type: 'labels', assigned: statement({ labels: { env: 'lab' }, changed: 2000 }) })
  await until('the genuine statement taken', () => h.identity.assignedLabels?.changed === 2000)
  t.same(h.assigned.judged(), { env: 'lab' })
  t.equal(h.assigned.refused, 1, 'the forged one refused')
  t.ok(await tunnel.ping(), 'the tunnel is still up')
})
