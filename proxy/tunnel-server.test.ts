// The proxy's tunnel server with real agents (AgentTunnel) over real TLS: what it tells
// them about the live proxy set, and the spread it asks for when a proxy joins; refused
// labels logged at most once a minute per tunnel, by an injected clock.

import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { type Duplex, PassThrough } from 'node:stream'
import { createServer, type TLSSocket } from 'node:tls'
import t, { type Test } from 'tap'
import { AgentTunnel, AuditRefused } from '../agent/tunnel.ts'
import type { ApiClient } from '../shared/api-client.ts'
import { serverWaitMs } from '../shared/backoff.ts'
import { ApiError } from '../shared/errors.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { createLogger } from '../shared/log.ts'
import { signAsNode } from '../shared/node-signature.ts'
import { sendToProxy } from '../shared/protocol/control.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { signLiveSet } from '../shared/signed-live-set.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { until } from '../test/helpers/until.ts'
import { type AuditMessage, relayAudit } from './audit-relay.ts'
import { AmbiguousNodeName, renewalSpreadMs, returnSpreadMs, type Tunnel, TunnelServer } from './tunnel-server.ts'

const HOUR = 3_600_000
const ca = createCA('test-cluster host CA', 'test-cluster')
const log = createLogger('test', { level: 'error' })
/** The auth server's signer of live sets: the host CA's key. */
const signer = [{ certPem: ca.certPem, key: ca.key }]
/** Announces `ids` as the auth server would hand them to the proxy: signed with the host CA's key. */
const announceSigned = (tunnels: TunnelServer, ids: string[]) => tunnels.announce(ids, signLiveSet('test-cluster', ids, signer))

function certificate(commonName: string, role: string, nodename = commonName): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const cert = createCertificate({
    subject: { CN: commonName, O: 'test-cluster', OU: [role], name: nodename },
    issuer: { CN: 'test-cluster host CA', O: 'test-cluster' },
    publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + HOUR),
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
  return { cert, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

function nodeIdentity(nodename?: string): NodeIdentity {
  const hostId = randomUUID()
  const { cert, key } = certificate(hostId, 'node', nodename)
  return {
    hostId,
    nodename: nodename ?? hostId,
    clusterName: 'test-cluster',
    roles: ['node'],
    authServers: [],
    tlsKeyPem: key,
    tlsCertPem: cert,
    sshKeyPem: '',
    sshCert: '',
    hostCAPems: [ca.certPem],
    userCASshKeys: [],
    trustVersion: 0,
  }
}

t.test('returns are spread so that a joining proxy gets about 300 a second, over 1 to 60 s', async (t) => {
  t.equal(returnSpreadMs(0), 1000)
  t.equal(returnSpreadMs(1500), 5000)
  t.equal(returnSpreadMs(3000), 10_000)
  t.equal(returnSpreadMs(5000), 16_667)
  t.equal(returnSpreadMs(100_000), 60_000)
})

t.test("renewals after a rotation are spread so that the auth server gets about 50 a second from a proxy's nodes, over at most 5 minutes", async (t) => {
  t.equal(renewalSpreadMs(0), 0)
  t.equal(renewalSpreadMs(10), 200, 'a small cluster renews within moments')
  t.equal(renewalSpreadMs(1500), 30_000)
  t.equal(renewalSpreadMs(100_000), 300_000)
})

/** A tunnel server behind a real TLS listener, as the proxy's tunnel port is. */
async function tunnelServer(
  t: Test,
  options: Partial<Pick<ConstructorParameters<typeof TunnelServer>[0], 'clock' | 'log'>> = {},
): Promise<{ proxyId: string; tunnels: TunnelServer; port: number }> {
  const proxyId = randomUUID()
  const tunnels = new TunnelServer({ proxyId, clusterName: 'test-cluster', hostCAPems: () => [ca.certPem], keepAliveIntervalMs: 15_000, log, ...options })
  const { cert, key } = certificate(proxyId, 'proxy')
  const server = createServer({ cert, key, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false, ALPNProtocols: [TUNNEL_ALPN] }, (socket: TLSSocket) =>
    tunnels.handle(socket, '127.0.0.1'),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    tunnels.close()
    server.close()
  })
  return { proxyId, tunnels, port: (server.address() as AddressInfo).port }
}

/** An agent's tunnel to the server at `port`, kept (its hello said), closed when the test ends. */
async function openAgent(t: Test, port: number, identity = nodeIdentity(), labels: () => Record<string, string> = () => ({})): Promise<AgentTunnel> {
  const agent = await AgentTunnel.open({ host: '127.0.0.1', port, identity, keepAliveIntervalMs: 15_000, labels, services: [], onStream: (s) => s.destroy(), log })
  t.teardown(() => agent.close())
  agent.activate()
  return agent
}

t.test('agents hear the live set, with a spread only when a proxy joined it', async (t) => {
  const { proxyId, tunnels, port } = await tunnelServer(t)

  announceSigned(tunnels, ['p1', proxyId])
  const agents = await Promise.all(
    [0, 1, 2].map(() =>
      AgentTunnel.open({ host: '127.0.0.1', port, identity: nodeIdentity(), keepAliveIntervalMs: 15_000, labels: () => ({}), services: [], onStream: (s) => s.destroy(), log }),
    ),
  )
  t.teardown(() =>
    agents.forEach((agent) => {
      agent.close()
    }),
  )
  for (const agent of agents) agent.activate()
  t.same(
    agents.map((agent) => agent.announced),
    [[proxyId, 'p1'].sort(), [proxyId, 'p1'].sort(), [proxyId, 'p1'].sort()],
    'the welcome carries the live set',
  )
  await until('three tunnels', () => tunnels.size === 3, { timeoutMs: 10_000, everyMs: 10 })

  const heard = (agent: AgentTunnel) => new Promise<[string[], number | undefined]>((resolve) => agent.once('proxies', (ids: string[], spread?: number) => resolve([ids, spread])))
  let next = agents.map(heard)
  announceSigned(tunnels, ['p1', 'p2', proxyId])
  for (const [ids, spread] of await Promise.all(next)) {
    t.same(ids, ['p1', 'p2', proxyId].sort(), 'the new set')
    t.equal(spread, returnSpreadMs(3), 'a proxy joined: returns are spread')
  }

  next = agents.map(heard)
  announceSigned(tunnels, ['p2', proxyId])
  for (const [ids, spread] of await Promise.all(next)) {
    t.same(ids, ['p2', proxyId].sort())
    t.equal(spread, undefined, 'a proxy left: nothing to spread')
  }
})

t.test('agents take a live set only as a host CA they trust signed it', async (t) => {
  const { proxyId, tunnels, port } = await tunnelServer(t)
  announceSigned(tunnels, ['p1', proxyId])
  const agent = await openAgent(t, port)
  await until('the tunnel', () => tunnels.size === 1, { timeoutMs: 10_000, everyMs: 10 })
  const refusal = () => new Promise<string>((resolve) => agent.once('live_set_refused', resolve))
  const other = createCA('another host CA', 'test-cluster')
  const genuine = signLiveSet('test-cluster', [proxyId], signer)
  const forgeries: [string, string[], Parameters<TunnelServer['announce']>[1]][] = [
    ['unsigned', [proxyId], undefined],
    ['signed by a CA the node does not trust', [proxyId], signLiveSet('test-cluster', [proxyId], [{ certPem: other.certPem, key: other.key }])],
    ['signed for another cluster', [proxyId], signLiveSet('other-cluster', [proxyId], signer)],
    ['a genuine signature over another set', ['p1', 'p2', proxyId], genuine],
    ['a genuine signature with its time changed', [proxyId], { ...genuine, signed_at: genuine.signed_at + 1 }],
  ]
  for (const [what, ids, signed] of forgeries) {
    const refused = refusal()
    tunnels.announce(['p0'], undefined) // a different set first, so that the next is sent
    await refused
    const next = refusal()
    tunnels.announce(ids, signed)
    t.ok(await next, `refused: ${what}`)
    t.same(agent.announced, ['p1', proxyId].sort(), 'the signed set is kept')
  }
})

t.test('the same set signed again is not sent again, but an agent that connects later gets the latest signature', async (t) => {
  const { proxyId, tunnels, port } = await tunnelServer(t)
  const ids = ['p1', proxyId]
  const first = signLiveSet('test-cluster', ids, signer, 1000)
  const later = signLiveSet('test-cluster', ids, signer, 2000)
  tunnels.announce(ids, first)
  const early = await openAgent(t, port)
  await until('the tunnel', () => tunnels.size === 1, { timeoutMs: 10_000, everyMs: 10 })
  let heard = 0
  early.on('proxies', () => heard++)
  tunnels.announce(ids, later)
  tunnels.announce(ids, first)
  const late = await openAgent(t, port)
  await until('the later agent to hear the set', () => late.announcedAt !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  t.equal(early.announcedAt, 1000, 'the agent there before keeps the set it heard')
  t.equal(late.announcedAt, 2000, 'a later agent gets the latest signature, not an older one that came after it')
  t.equal(heard, 0, 'nothing was sent again')
})

t.test("a node's new labels reach the proxy through its tunnel", async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  const identity = nodeIdentity()
  const agent = await AgentTunnel.open({
    host: '127.0.0.1',
    port,
    identity,
    keepAliveIntervalMs: 15_000,
    labels: () => ({ stage: 'one' }),
    services: [],
    onStream: (s) => s.destroy(),
    log,
  })
  t.teardown(() => agent.close())
  agent.activate()
  await until('the hello', () => tunnels.find(identity.hostId)?.labels.stage === 'one', { timeoutMs: 10_000, everyMs: 10 })
  agent.sendLabels({ stage: 'two' })
  await until('the new labels', () => tunnels.find(identity.hostId)?.labels.stage === 'two', { timeoutMs: 10_000, everyMs: 10 })
  t.same(tunnels.find(identity.hostId)?.labels, { stage: 'two' })
})

t.test('a node name that two connected hosts carry is never guessed between', async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  const real = nodeIdentity('pi-1')
  const stale = nodeIdentity('pi-1')
  await openAgent(t, port, real)
  await until('the hello', () => tunnels.size === 1, { timeoutMs: 10_000, everyMs: 10 })
  t.equal(tunnels.find('pi-1')?.hostId, real.hostId, 'one host with the name: routed by name')
  const staleAgent = await openAgent(t, port, stale)
  await until('both tunnels', () => tunnels.size === 2, { timeoutMs: 10_000, everyMs: 10 })
  const both = [real.hostId, stale.hostId].sort()
  t.throws(() => tunnels.find('pi-1'), new AmbiguousNodeName('pi-1', both))
  t.match(new AmbiguousNodeName('pi-1', both).message, `node name "pi-1" is carried by 2 connected hosts (${both.join(', ')})`)
  await t.rejects(tunnels.dial('pi-1', { service: 'ssh' }), /is carried by 2 connected hosts/, 'a user asking for the name is refused')
  t.equal(tunnels.find(real.hostId)?.hostId, real.hostId, 'the host ID still routes')
  staleAgent.close()
  await until('the stale tunnel gone', () => tunnels.size === 1, { timeoutMs: 10_000, everyMs: 10 })
  t.equal(tunnels.find('pi-1')?.hostId, real.hostId)
})

t.test('renewal requests on a control stream go out one at a time', async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  let requested = 0
  tunnels.on('renew', () => requested++)
  const identity = nodeIdentity()
  let round = 0
  const agent = await openAgent(t, port, identity, () => ({ round: String(round) }))
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  // The labels that follow the flood arrive after every line of it, on the same stream.
  const flood = async () => {
    for (let i = 0; i < 2000; i++) agent.requestRenewal()
    agent.sendLabels({ round: String(++round) })
    await until('the flood read', () => tunnels.find(identity.hostId)?.labels.round === String(round), { timeoutMs: 10_000, everyMs: 10 })
  }
  await flood()
  t.equal(requested, 1, '2,000 requests while one is out: one passed on')
  tunnels.find(identity.hostId)!.renewing = false // the auth server answered
  await flood()
  t.equal(requested, 2, 'after the answer, the next one')
})

t.test('a host holds at most 4 connections here that have not said hello: past that the oldest goes', async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  const identity = nodeIdentity()
  const agents: AgentTunnel[] = []
  // A modified agent's dials that never say hello, each held until the hello's timeout otherwise.
  for (let i = 0; i < 6; i++) {
    const agent = await AgentTunnel.open({ host: '127.0.0.1', port, identity, keepAliveIntervalMs: 15_000, labels: () => ({}), services: [], onStream: (s) => s.destroy(), log })
    t.teardown(() => agent.close())
    agents.push(agent)
  }
  const alive = () =>
    Promise.all(
      agents.map((agent) =>
        agent.ping().then(
          () => true,
          () => false,
        ),
      ),
    )
  await until('the two oldest to be closed', async () => (await alive()).filter((open) => !open).length === 2, { timeoutMs: 10_000, everyMs: 50 })
  t.same(await alive(), [false, false, true, true, true, true], 'the four newest are held')
  t.equal(tunnels.counts.declined.no_hello, 2)
})

/** Counts the audit batches `tunnels` relays, and the most with the auth server at once, which answers each a little later. */
function countRelays(tunnels: TunnelServer): { relayed: number; most: number } {
  const counts = { relayed: 0, most: 0 }
  let inFlight = 0
  tunnels.on('audit', (_tunnel, _message, done: () => void) => {
    inFlight++
    counts.relayed++
    counts.most = Math.max(counts.most, inFlight)
    setTimeout(() => {
      inFlight--
      done()
    }, 20)
  })
  return counts
}

t.test('a tunnel has at most 4 audit batches with the auth server at once: the rest wait, unread', async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  const counts = countRelays(tunnels)
  const identity = nodeIdentity()
  const agent = await openAgent(t, port, identity)
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  // Ten batches at once, as a modified agent would send them (the real one waits for each answer).
  for (let i = 0; i < 10; i++) void agent.deliverAudit([{ id: `flood-${i}-event`, time: Date.now(), type: 'exec', command: 'true' }]).catch(() => {})
  // Labels sent after the flood are read after every batch of it, on the same stream.
  agent.sendLabels({ after: 'flood' })
  await until('the flood to be read', () => tunnels.find(identity.hostId)?.labels.after === 'flood', { timeoutMs: 10_000, everyMs: 10 })
  t.equal(counts.relayed, 10, 'every batch was relayed')
  t.equal(counts.most, 4, 'never more than 4 at once')
})

t.test('batches sent in one write wait their turn too: at most 4 with the auth server at once', async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  const counts = countRelays(tunnels)
  const identity = nodeIdentity()
  const agent = await openAgent(t, port, identity)
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  const lines = Array.from({ length: 40 }, (_, i) => `${JSON.stringify({ type: 'audit', batch: `one-write-${i}`, events: [] })}\n`).join('')
  ;(agent as unknown as { control: Duplex }).control.write(lines)
  await until('every batch to be relayed', () => counts.relayed === 40, { timeoutMs: 10_000, everyMs: 10 })
  t.equal(counts.most, 4, 'never more than 4 at once')
})

t.test('a node that reads none of its answers has its tunnel closed, not held in memory', async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  // Each answer carries the auth server's 4 KiB refusal: 256 of them pass the limit.
  const refusing = { call: () => Promise.reject(new ApiError(500, 'x'.repeat(4000))) } as unknown as ApiClient
  tunnels.on('audit', (tunnel: Tunnel, message: AuditMessage, done: () => void) => void relayAudit(refusing, tunnel, message).then(done, done))
  const identity = nodeIdentity()
  const agent = await openAgent(t, port, identity)
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  const control = (agent as unknown as { control: Duplex }).control
  control.pause()
  control.removeAllListeners('data')
  for (let batch = 0; batch < 2000 && tunnels.find(identity.hostId); batch += 40) {
    control.write(Array.from({ length: 40 }, (_, i) => `${JSON.stringify({ type: 'audit', batch: `unread-${batch + i}`, events: [] })}\n`).join(''))
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await until('the tunnel to close', () => tunnels.find(identity.hostId) === undefined, { timeoutMs: 20_000, everyMs: 20 })
  t.equal(tunnels.counts.closed.protocol_error, 1, 'closed as a protocol error')
})

t.test('label changes in a loop have the users judged again at most once a second, the last labels included', async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  const judged: string[] = []
  tunnels.on('labels', (tunnel: Tunnel) => judged.push(tunnel.labels.k ?? ''))
  const identity = nodeIdentity()
  const agent = await openAgent(t, port, identity)
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  for (let i = 0; i < 200; i++) agent.sendLabels({ k: String(i) })
  await until('the last labels to be read', () => tunnels.find(identity.hostId)?.labels.k === '199', { timeoutMs: 10_000, everyMs: 10 })
  await until('the last labels to be judged', () => judged.at(-1) === '199', { timeoutMs: 5_000, everyMs: 20 })
  t.ok(judged.length <= 3, `judged ${judged.length} times for 200 changes`)
})

t.test("the auth server's Retry-After reaches the node with the failed batch, which it keeps", async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  // The auth server's answer to a node over its event budget (auth/api/errors.ts: 429 with Retry-After).
  const overBudget = { call: () => Promise.reject(new ApiError(429, 'too many audit events from this node', 7)) } as unknown as ApiClient
  tunnels.on('audit', (tunnel: Tunnel, message: AuditMessage, done: () => void) => void relayAudit(overBudget, tunnel, message).then(done, done))
  const identity = nodeIdentity()
  const agent = await openAgent(t, port, identity)
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  const failed = await agent.deliverAudit([{ id: 'budget-event', time: Date.now(), type: 'exec', command: 'true' }]).then(
    () => undefined,
    (error: Error) => error,
  )
  t.ok(failed && !(failed instanceof AuditRefused), 'the batch failed, to be sent again')
  t.equal((failed as { retryAfterS?: number }).retryAfterS, 7, "with the auth server's wait")
  t.equal(serverWaitMs(failed), 7000, 'which the node waits out before sending it again')
})

t.test("a batch the node did not sign with its tunnel certificate's key is refused at the proxy, never relayed", async (t) => {
  const { tunnels, port } = await tunnelServer(t)
  const relayed: string[] = []
  const auth = {
    call: (_route: string, { body }: { body: { events: { id: string }[] } }) => {
      relayed.push(...body.events.map((event) => event.id))
      return Promise.resolve({ stored: body.events.length })
    },
  } as unknown as ApiClient
  tunnels.on('audit', (tunnel: Tunnel, message: AuditMessage, done: () => void) => void relayAudit(auth, tunnel, message).then(done, done))
  const identity = nodeIdentity()
  const agent = await openAgent(t, port, identity)
  await until('the hello', () => tunnels.find(identity.hostId) !== undefined, { timeoutMs: 10_000, everyMs: 10 })
  // Signed with another key: the auth server would refuse it, and charge this proxy for it.
  const events = [{ id: 'forged-by-node', time: Date.now(), type: 'exec' as const, command: 'true' }]
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const batch = randomUUID()
  const answer = new Promise<{ type: string; refused?: boolean }>((resolve) => {
    for (const type of ['audit_failed', 'audit_stored'])
      agent.on(type, (message: { type: string; batch: string; refused?: boolean }) => message.batch === batch && resolve(message))
  })
  sendToProxy((agent as unknown as { control: Duplex }).control, {
    type: 'audit',
    batch,
    events,
    signature: signAsNode(identity.hostId, { kind: 'audit events', events }, otherKey),
  })
  t.match(await answer, { type: 'audit_failed', refused: true }, 'the node is told it is refused for good')
  await agent.deliverAudit([{ id: 'signed-by-node', time: Date.now(), type: 'exec', command: 'true' }])
  t.same(relayed, ['signed-by-node'], 'only what the node signed with its own key reached the auth server')
})

t.test("a node's refused labels are logged once a minute at most, however often it sends them", async (t) => {
  const T0 = Date.UTC(2026, 11, 1, 12)
  let now = T0
  // Read once for each refused set the server takes in: which also says it has taken it in.
  let read = 0
  const clock = () => {
    read++
    return now
  }
  const lines = new PassThrough()
  const entries: Record<string, unknown>[] = []
  lines.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) entries.push(JSON.parse(line))
  })
  const jsonLog = createLogger('proxy', { level: 'warn', format: 'json', stream: lines, now: () => new Date(now) })
  const { tunnels, port } = await tunnelServer(t, { clock, log: jsonLog })
  const identity = nodeIdentity()
  const agent = await openAgent(t, port, identity, () => ({ stage: 'one' }))
  await until('the hello', () => tunnels.find(identity.hostId)?.labels.stage === 'one', { timeoutMs: 10_000, everyMs: 10 })
  const refusals = () => entries.filter((entry) => entry.labels_refused !== undefined)
  const sendRefused = async () => {
    const before = read
    agent.sendLabels({ 'a key with spaces': 'x' })
    await until('the server to take the labels in', () => read > before, { timeoutMs: 10_000, everyMs: 5 })
  }

  for (let n = 0; n < 30; n++) {
    await sendRefused()
    now += 2000
  }
  t.equal(now, T0 + 60_000)
  t.equal(refusals().length, 1, '30 refused sets within a minute: one entry')
  t.match(refusals()[0], { host_id: identity.hostId, time: new Date(T0).toISOString() })
  t.same(tunnels.find(identity.hostId)?.labels, { stage: 'one' }, 'the good labels are kept')

  await sendRefused()
  t.equal(refusals().length, 2, 'a minute after the first entry, the next refusal is logged')
  t.equal(refusals()[1].time, new Date(T0 + 60_000).toISOString())
  await sendRefused()
  t.equal(refusals().length, 2, 'and then not again within the minute')

  agent.sendLabels({ stage: 'two' })
  await until('the good labels', () => tunnels.find(identity.hostId)?.labels.stage === 'two', { timeoutMs: 10_000, everyMs: 10 })
  await sendRefused()
  t.equal(refusals().length, 3, 'a refusal after good labels is news again')
})
