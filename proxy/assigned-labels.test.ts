// The proxy's copy of the labels the cluster assigns: fetched only when their generation
// changes, malformed entries left out whole; users judged by a node's labels with the
// assigned ones in place of its own; and each statement handed to its node's agent, only
// when its hello said it takes them, at registration and whenever it changes. Tunnels are
// real (TLS and yamux); the agents are minimal ones that say what hello they are told to.

import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { connect } from 'node:tls'
import t, { type Test } from 'tap'
import { type Access, type LabelMatcher, nodeRefusal } from '../shared/access.ts'
import { type AssignedLabelsStatement, checkAssignedLabels, signAssignedLabels } from '../shared/assigned-labels.ts'
import { createLogger } from '../shared/log.ts'
import { type ProxyMessage, parseProxyMessage, sendToProxy } from '../shared/protocol/control.ts'
import { parseDialRequest } from '../shared/protocol/dial.ts'
import { readFirstMessage, readMessages, writeMessage } from '../shared/protocol/framing.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { signLiveSet } from '../shared/signed-live-set.ts'
import { createCA } from '../shared/x509.ts'
import { createSession } from '../shared/yamux/index.ts'
import { hostCertificate, serveTunnels, tunnelDialer } from '../test/helpers/tunnel-port.ts'
import { until } from '../test/helpers/until.ts'
import { certsMessage, ProxyAssignedLabels, parseAssignedLabels } from './assigned-labels.ts'
import { AccessDenied } from './node-dialer.ts'
import { TunnelServer } from './tunnel-server.ts'

const CLUSTER = 'test-cluster'
const ca = createCA('test-cluster host CA', CLUSTER)
const signer = [{ certPem: ca.certPem, key: ca.key }]
const log = createLogger('test', { level: 'error' })
const WAIT = { timeoutMs: 10_000, everyMs: 10 }

function statement(hostId: string, labels: Record<string, string>, changed = 1000, cluster = CLUSTER): AssignedLabelsStatement {
  return signAssignedLabels({ cluster_name: cluster, host_id: hostId, labels, changed }, signer)
}

/** An auth server's GET /v1/proxies/assigned-labels, as the test sets it, counting fetches. */
function authServer(initial: { generation: string; hosts: unknown[]; assigned_only_keys?: unknown }) {
  const state = { answer: initial as unknown, fetches: 0 }
  const fetch = async () => {
    state.fetches++
    return state.answer
  }
  return { state, fetch }
}

/** The proxy's parts as proxy.ts wires them: the follower, the tunnel server, and the dialer users go through. */
async function proxy(t: Test, auth: ReturnType<typeof authServer>, onKeysChange?: () => void) {
  const proxyId = randomUUID()
  let tunnels: TunnelServer | undefined
  const assigned = new ProxyAssignedLabels({ fetch: auth.fetch, clusterName: CLUSTER, onChange: (hostIds) => tunnels?.relayAssignedLabels(hostIds), onKeysChange, log })
  tunnels = new TunnelServer({
    proxyId,
    clusterName: CLUSTER,
    hostCAPems: () => [ca.certPem],
    assignedLabels: (hostId) => assigned.statement(hostId),
    keepAliveIntervalMs: 15_000,
    log,
  })
  const nodes = tunnelDialer(tunnels, assigned, ca, CLUSTER, log)
  const port = await serveTunnels(t, tunnels, ca, CLUSTER, proxyId)
  const all = tunnels
  return { proxyId, assigned, tunnels: all, nodes, port }
}

/**
 * A minimal agent: says hello with `labels` once welcomed (with `assigned_labels: true` when
 * `asks`), answers every dial with ok, and keeps every control message the proxy sends.
 */
async function agent(t: Test, port: number, labels: Record<string, string>, asks: boolean, hostId: string = randomUUID()) {
  const { cert, key } = hostCertificate(ca, CLUSTER, hostId, 'node')
  const socket = connect({ host: '127.0.0.1', port, cert, key, ca: [ca.certPem], ALPNProtocols: [TUNNEL_ALPN], checkServerIdentity: () => undefined })
  await once(socket, 'secureConnect')
  const session = createSession(socket, { client: true, keepAliveIntervalMs: 15_000 })
  session.on('error', () => {})
  session.on('stream', (stream: Duplex) => {
    void readFirstMessage(stream, parseDialRequest).then(
      () => writeMessage(stream, { ok: true }),
      () => stream.destroy(),
    )
  })
  const control = session.open()
  const received: ProxyMessage[] = []
  let closed = false
  session.on('close', () => {
    closed = true
  })
  readMessages(control, parseProxyMessage, (message) => {
    received.push(message)
    if (message.type === 'welcome') sendToProxy(control, { type: 'hello', version: 1, labels, ...(asks ? { assigned_labels: true } : {}) })
  })
  t.teardown(() => session.close())
  const labelsMessages = () => received.flatMap((message) => (message.type === 'labels' ? [message.assigned] : []))
  return { hostId, received, labelsMessages, closed: () => closed, close: () => session.close() }
}

/** What a role selecting `nodes` allows (login root). */
function access(nodes: LabelMatcher): Access {
  return {
    logins: ['root'],
    nodes: [nodes],
    deny_nodes: [],
    ports: [],
    deny_ports: [],
    rules: [{ nodes, logins: ['root'], ports: [] }],
    admin: false,
    local_forwarding: true,
    remote_forwarding: false,
    agent_forwarding: false,
  }
}

t.test('each entry is taken whole or left out: malformed ones and other clusters are dropped', async (t) => {
  const good = statement('h1', { env: 'lab' })
  const { signatures: _, ...unsigned } = statement('h2', { env: 'lab' })
  const parsed = parseAssignedLabels(
    {
      generation: 'g1',
      hosts: [
        good,
        unsigned,
        { ...statement('h3', { env: 'lab' }), labels: { env: 42 } },
        { ...statement('h4', { env: 'lab' }), changed: -1 },
        { ...statement('h5', { 'a key with spaces': 'x' }) },
        'h6',
        null,
        statement('h7', { env: 'lab' }, 1000, 'other-cluster'),
        statement('h8', { env: 'one' }, 2000),
        statement('h8', { env: 'two' }, 1000),
      ],
    },
    CLUSTER,
  )
  t.equal(parsed?.generation, 'g1')
  t.same([...(parsed?.hosts.keys() ?? [])].sort(), ['h1', 'h8'], 'only whole entries of this cluster')
  t.same(parsed?.hosts.get('h1'), good)
  t.same(parsed?.hosts.get('h8')?.labels, { env: 'one' }, 'of two entries for one host, the newer')
  t.equal(parsed?.dropped, 7)
  t.same([...(parsed?.assignedOnly ?? ['x'])], [], 'no keys only assigned: from an auth server of an earlier version')
  t.same([...(parseAssignedLabels({ generation: 'g', hosts: [], assigned_only_keys: ['env', 'site'] }, CLUSTER)?.assignedOnly ?? [])], ['env', 'site'])
  for (const bad of [
    undefined,
    null,
    [],
    'x',
    { hosts: [] },
    { generation: 'g', hosts: {} },
    { generation: 1, hosts: [] },
    // The keys are taken whole or the answer is none: fewer would judge by labels a node gave itself.
    { generation: 'g', hosts: [], assigned_only_keys: 'env' },
    { generation: 'g', hosts: [], assigned_only_keys: ['env', 'bad key'] },
    { generation: 'g', hosts: [], assigned_only_keys: ['env', 7] },
  ]) {
    t.equal(parseAssignedLabels(bad, CLUSTER), undefined, `no answer: ${JSON.stringify(bad)}`)
  }
})

t.test('the statements are fetched only when their generation changes', async (t) => {
  const h1 = statement('h1', { env: 'lab' })
  const auth = authServer({ generation: 'g1', hosts: [h1, { host_id: 'h2', labels: { env: 'lab' } }] })
  const changes: string[][] = []
  const assigned = new ProxyAssignedLabels({ fetch: auth.fetch, clusterName: CLUSTER, onChange: (hostIds) => changes.push(hostIds.sort()), log })

  await assigned.follow('')
  t.equal(auth.state.fetches, 0, "'' (none ever assigned) is the generation a proxy starts with: nothing to fetch")
  await assigned.follow('g1')
  t.equal(auth.state.fetches, 1, 'a new generation: fetched')
  t.same(assigned.judged('h1', { env: 'own', room: 'a' }), { env: 'lab', room: 'a' })
  t.same(assigned.judged('h2', { env: 'own' }), { env: 'own' }, 'the malformed entry is left out')
  t.same(changes, [['h1']])
  await assigned.follow('g1')
  await assigned.follow(42)
  t.equal(auth.state.fetches, 1, 'the same generation (or none that reads as one): not fetched again')

  auth.state.answer = { generation: 'g2', hosts: [h1, statement('h3', { env: 'prod' })] }
  await assigned.follow('g2')
  t.equal(auth.state.fetches, 2)
  t.same(changes[1], ['h3'], 'only the hosts whose statement changed are told')

  auth.state.answer = { generation: 'g3' }
  await t.rejects(assigned.follow('g3'), /no assigned labels/)
  t.equal(assigned.generation, 'g2', 'a bad answer changes nothing, and is fetched again at the next poll')
  t.same(assigned.judged('h3', {}), { env: 'prod' })

  await assigned.follow(undefined)
  t.equal(assigned.size, 0, 'an auth server of an earlier version sends no generation: it assigns no labels')
  t.same(changes[2], ['h1', 'h3'])
  t.equal(auth.state.fetches, 3)
})

t.test('users are judged by the assigned labels in place of those the node reports', async (t) => {
  const auth = authServer({ generation: '', hosts: [] })
  const { assigned, tunnels, nodes, port } = await proxy(t, auth)
  // A stolen device labels itself env=prod to reach prod users' sessions.
  const node = await agent(t, port, { env: 'prod', site: 'kitchen' }, false)
  await until('the tunnel', () => tunnels.byHostId(node.hostId) !== undefined, WAIT)
  const prodOnly = access({ env: ['prod'] })
  const labOnly = access({ env: ['lab'] })
  const kitchen = access({ site: ['kitchen'] })
  const dial = (who: Access) => nodes.dial(node.hostId, { service: 'ssh' }, (labels) => nodeRefusal(who, labels))

  ;(await dial(prodOnly)).destroy()
  t.pass('no labels assigned: judged by those it reports')

  auth.state.answer = { generation: 'g1', hosts: [statement(node.hostId, { env: 'lab' })] }
  await assigned.follow('g1')
  const refused = await dial(prodOnly).then(
    (stream) => stream.destroy(),
    (error: Error) => error,
  )
  t.ok(refused instanceof AccessDenied, 'assigned env=lab: a role allowing only env=prod is refused, at once on the live tunnel')
  t.match(refused, { message: /the user's roles do not allow this node/ })
  ;(await dial(labOnly)).destroy()
  t.pass('and a role allowing env=lab reaches it')
  ;(await dial(kitchen)).destroy()
  t.pass('its own labels of other keys still count')
  t.same(tunnels.byHostId(node.hostId)?.labels, { env: 'prod', site: 'kitchen' }, 'the tunnel keeps the labels as reported (presence reports carry those)')

  auth.state.answer = { generation: 'g2', hosts: [] }
  await assigned.follow('g2')
  ;(await dial(prodOnly)).destroy()
  t.pass('assigned labels gone: its own count again')
})

t.test('of the keys only assigned, a node carries what was assigned and none of its own', async (t) => {
  const auth = authServer({ generation: '', hosts: [] })
  const keysChanged: number[] = []
  const { assigned, tunnels, nodes, port } = await proxy(t, auth, () => keysChanged.push(keysChanged.length))
  // A stolen device labels itself env=prod, a key the cluster keeps for assignments.
  const node = await agent(t, port, { env: 'prod', site: 'kitchen' }, false)
  const assignedNode = await agent(t, port, { env: 'prod' }, false)
  await until('the tunnels', () => [node, assignedNode].every((a) => tunnels.byHostId(a.hostId) !== undefined), WAIT)
  const dial = (hostId: string, who: Access) => nodes.dial(hostId, { service: 'ssh' }, (labels) => nodeRefusal(who, labels))
  const refusal = (hostId: string, who: Access) =>
    dial(hostId, who).then(
      (stream) => {
        stream.destroy()
        return undefined
      },
      (error: Error) => error,
    )

  auth.state.answer = { generation: 'g1/k', hosts: [statement(assignedNode.hostId, { env: 'lab' })], assigned_only_keys: ['env'] }
  await assigned.follow('g1/k')
  t.same(keysChanged, [0], 'the keys changed: open connections are judged again')
  t.type(await refusal(node.hostId, access({ env: ['prod'] })), AccessDenied, 'its own env=prod counts for nothing')
  t.type(await refusal(node.hostId, access({ env: ['*'] })), AccessDenied, 'not even as some env')
  t.equal(await refusal(node.hostId, access({ site: ['kitchen'] })), undefined, 'its own labels of other keys still count')
  t.same(assigned.judged(assignedNode.hostId, { env: 'prod', room: 'a' }), { env: 'lab', room: 'a' }, 'an assigned value stands in for its own')
  t.equal(await refusal(assignedNode.hostId, access({ env: ['lab'] })), undefined, 'and admits')

  auth.state.answer = { generation: 'g2/k', hosts: [], assigned_only_keys: ['env'] }
  await assigned.follow('g2/k')
  t.same(keysChanged, [0], 'the same keys: not judged again for them')
  auth.state.answer = { generation: 'g2', hosts: [] }
  await assigned.follow('g2')
  t.same(keysChanged, [0, 1], 'none now (an auth server of an earlier version sends none)')
  t.equal(await refusal(node.hostId, access({ env: ['prod'] })), undefined, 'its own env counts again')
})

t.test('agents that take them are sent their assigned labels at registration and on change; others never', async (t) => {
  const auth = authServer({ generation: '', hosts: [] })
  const { proxyId, assigned, tunnels, port } = await proxy(t, auth)
  // A live set, sent to every agent after whatever came before it on the control stream.
  let round = 0
  const sync = async (agents: Awaited<ReturnType<typeof agent>>[]) => {
    const ids = [proxyId, `p${++round}`]
    tunnels.announce(ids, signLiveSet(CLUSTER, ids, signer))
    await until('the live set', () => agents.every((a) => a.received.some((m) => m.type === 'proxies' && m.ids.includes(`p${round}`))), WAIT)
  }

  const early = await agent(t, port, { env: 'prod' }, true)
  await until('the tunnel', () => tunnels.byHostId(early.hostId) !== undefined, WAIT)
  await sync([early])
  t.same(early.labelsMessages(), [], 'nothing assigned: nothing sent')

  const older = await agent(t, port, { env: 'prod' }, false)
  const none = await agent(t, port, {}, true)
  const first = { generation: 'g1', hosts: [statement(early.hostId, { env: 'lab' }, 1000), statement(older.hostId, { env: 'lab' }, 1000)] }
  auth.state.answer = first
  await assigned.follow('g1')
  await until('the labels for the agent there before', () => early.labelsMessages().length === 1, WAIT)
  t.same(early.labelsMessages()[0], first.hosts[0], 'its statement, on the change')
  t.ok(checkAssignedLabels(early.labelsMessages()[0]!, { clusterName: CLUSTER, hostId: early.hostId, trustedPems: [ca.certPem] }, undefined), 'which the node can verify')

  const late = await agent(t, port, { env: 'prod' }, true)
  await until('the later tunnels', () => [older, none, late].every((a) => tunnels.byHostId(a.hostId) !== undefined), WAIT)
  const lateStatement = statement(late.hostId, { env: 'lab' }, 1000)
  auth.state.answer = { generation: 'g2', hosts: [...first.hosts, lateStatement] }
  await assigned.follow('g2')
  await until('the labels for the later agent', () => late.labelsMessages().length === 1, WAIT)
  await sync([early, older, none, late])
  t.same(early.labelsMessages().length, 1, 'an unchanged statement is not sent again')
  t.same(older.labelsMessages(), [], 'an agent whose hello did not say it takes them is never sent any')
  t.notOk(older.closed(), 'and keeps its tunnel')
  t.same(none.labelsMessages(), [], 'an agent with no labels assigned is sent none')

  const changed = statement(early.hostId, { env: 'lab', rack: 'r2' }, 2000)
  auth.state.answer = { generation: 'g5', hosts: [changed, first.hosts[1], lateStatement] }
  await assigned.follow('g5')
  await until('the changed labels', () => early.labelsMessages().length === 2, WAIT)
  t.same(early.labelsMessages()[1], changed, 'a changed statement is sent again')
  await sync([early, older, late])
  t.equal(late.labelsMessages().length, 1, 'to that host alone')
  t.same(older.labelsMessages(), [])
})

t.test('a tunnel is sent the statement held for its host once it registers, a new tunnel of the host again', async (t) => {
  const hostId = randomUUID()
  const held = statement(hostId, { env: 'lab' })
  const auth = authServer({ generation: 'g1', hosts: [held] })
  const { assigned, tunnels, port } = await proxy(t, auth)
  await assigned.follow('g1')
  const first = await agent(t, port, { env: 'prod' }, true, hostId)
  await until('the labels', () => first.labelsMessages().length === 1, WAIT)
  t.same(first.labelsMessages()[0], held, 'sent with the registration')
  const older = await agent(t, port, { env: 'prod' }, false, randomUUID())
  await until('the tunnel', () => tunnels.byHostId(older.hostId) !== undefined, WAIT)

  first.close()
  await until('the tunnel gone', () => tunnels.byHostId(hostId) === undefined, WAIT)
  const second = await agent(t, port, { env: 'prod' }, true, hostId)
  await until('the labels on the new tunnel', () => second.labelsMessages().length === 1, WAIT)
  t.same(second.labelsMessages()[0], held)
  t.equal(first.labelsMessages().length, 1)
})

t.test("a renewal's answer passes the node's assigned labels along when whole", async (t) => {
  const renewed = { tls_cert: 'cert', ssh_cert: 'ssh', host_ca_certs: ['ca'], user_ca_ssh_keys: [] }
  const held = statement('h1', { env: 'lab' })
  t.same(certsMessage({ ...renewed, assigned_labels: held }), { type: 'certs', ...renewed, assigned_labels: held })
  t.same(certsMessage(renewed), { type: 'certs', ...renewed }, 'none: none')
  const { signatures: _, ...unsigned } = held
  t.same(certsMessage({ ...renewed, assigned_labels: unsigned as AssignedLabelsStatement }), { type: 'certs', ...renewed }, 'a malformed one: none')
})
