// Asking for trust bridges as nodes and proxies do (agent/agent.ts, proxy/missed-rotation.ts),
// against a server whose certificate nobody verifies: the bridges and then the current set
// are offered to the host's own rule, one request at a time and no more often than
// BRIDGE_MS; a refused host asks once; a host no bridge leads out of is told how to be
// re-admitted.

import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:https'
import t, { type Test } from 'tap'
import type { NodeIdentity } from './identity-store.ts'
import type { Logger, LogLevel } from './log.ts'
import { caPin } from './pin.ts'
import { sshPublicKeyLine } from './ssh-cert.ts'
import { hostCAsAcrossBridges, TrustBridge, type TrustBridgeOptions } from './trust-bridge.ts'
import { signTrust, type TrustStatement } from './trust-statement.ts'
import { createCA } from './x509.ts'

const caA = createCA('host CA A', 'c1')
const caB = createCA('host CA B', 'c1')
const caC = createCA('host CA C', 'c1')
const userCA = sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey, 'user CA')
const statement = (version: number, cas: { certPem: string; key: (typeof caA)['key'] }[]) =>
  signTrust({ cluster_name: 'c1', version, host_ca_certs: cas.map((ca) => ca.certPem), user_ca_ssh_keys: [userCA] }, cas)
const bridge = statement(2, [caB, caA])
const now = statement(3, [caB])

const identity = (hostCAs: string[]): NodeIdentity => ({
  hostId: 'h1',
  nodename: 'pi-1',
  clusterName: 'c1',
  roles: ['node'],
  authServers: [],
  tlsKeyPem: '',
  tlsCertPem: '',
  sshKeyPem: '',
  sshCert: '',
  hostCAPems: hostCAs,
  userCASshKeys: [userCA],
  trustVersion: 1,
})

/** A server answering GET /v1/trust/bridges with `answer` (or 500), with a certificate from no CA the host trusts. */
async function bridgeServer(t: Test, answer: () => unknown) {
  const asked: string[] = []
  const server = createServer({ cert: caC.certPem, key: caC.key.export({ type: 'pkcs8', format: 'pem' }) }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://bridges')
    asked.push(url.searchParams.get('pin') ?? '')
    const body = answer()
    if (body === undefined) return res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"down"}')
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, asked }
}

function recordingLog(): Logger & { entries: { level: LogLevel; message: string; fields?: Record<string, unknown> }[] } {
  const entries: { level: LogLevel; message: string; fields?: Record<string, unknown> }[] = []
  const at = (level: LogLevel) => (message: string, fields?: Record<string, unknown>) => void entries.push({ level, message, fields })
  const log = { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), level: 'debug' as LogLevel, setLevel: () => {}, child: () => log }
  return log
}

/** A host trusting `hostCAs` that takes what `takes` allows (everything unless told), and what it was offered. */
function host(hostCAs: string[], { takes, ...options }: Partial<TrustBridgeOptions> & { takes?: (trust: TrustStatement, bridge: boolean) => boolean } = {}) {
  const offered: { version: number; bridge: boolean }[] = []
  const unbridged: { server: string; readmit: string; pins: string[] }[] = []
  const log = recordingLog()
  const bridges = new TrustBridge({
    role: 'node',
    identity: () => identity(hostCAs),
    follow: (trust, _server, bridge) => {
      offered.push({ version: trust.version, bridge })
      return takes?.(trust, bridge) ?? true
    },
    unbridged: (server, readmit, pins) => void unbridged.push({ server, readmit, pins }),
    log,
    ...options,
  })
  return { bridges, offered, unbridged, log }
}

t.test('the bridges are offered, then the current set, and one request at a time', async (t) => {
  const server = await bridgeServer(t, () => ({ bridges: [bridge], trust: now }))
  const h = host([caA.certPem])
  const [first, second] = await Promise.all([h.bridges.ask(server.address, 'untrusted'), h.bridges.ask(server.address, 'untrusted')])
  t.ok(first && second, 'both callers are told a set was taken')
  t.same(server.asked, [caPin(caA.certPem)], 'by one request, for the CA the host trusts')
  t.same(h.offered, [
    { version: 2, bridge: true },
    { version: 3, bridge: false },
  ])
  t.match(h.log.entries[0], { level: 'warn', message: /presents a certificate from a host CA this node does not trust: asking it for a bridge/ })
  t.notOk(await h.bridges.ask(server.address, 'untrusted'), 'asked again at once: not due')
  t.equal(server.asked.length, 1, 'and not sent')
  t.notOk(h.bridges.due)
  t.notOk(h.bridges.busy)
})

t.test('a bridge taken is enough, and a current set alone (the host heard the rotation begin) too', async (t) => {
  const server = await bridgeServer(t, () => ({ bridges: [bridge], trust: now }))
  const bridgeOnly = host([caA.certPem], { takes: (_trust, bridge) => bridge })
  t.ok(await bridgeOnly.bridges.ask(server.address, 'untrusted'))
  const currentOnly = host([caA.certPem, caB.certPem], { takes: (_trust, bridge) => !bridge })
  t.ok(await currentOnly.bridges.ask(server.address, 'refused'))
  t.same(server.asked, [caPin(caA.certPem), caPin(caA.certPem)])
  t.notOk(
    currentOnly.log.entries.some((entry) => entry.level === 'warn'),
    'a refused host is not told the server is untrusted',
  )
})

t.test('nothing taken: a refused host asks once and stays quiet, an untrusted one asks for every CA and is told how to be re-admitted', async (t) => {
  const server = await bridgeServer(t, () => ({ bridges: [], trust: now }))
  const refused = host([caA.certPem, caB.certPem], { takes: () => false })
  t.notOk(await refused.bridges.ask(server.address, 'refused'))
  t.same(server.asked, [caPin(caA.certPem)], 'one question: every answer carries the current set')
  t.same(refused.unbridged, [])

  server.asked.length = 0
  const untrusted = host([caA.certPem, caB.certPem], { takes: () => false })
  t.notOk(await untrusted.bridges.ask(server.address, 'untrusted'))
  t.same(server.asked, [caPin(caA.certPem), caPin(caB.certPem)], 'one question for each CA it trusts')
  t.same(untrusted.unbridged, [{ server: server.address, readmit: 'warrenctl nodes add --nodename=pi-1', pins: [caPin(caA.certPem), caPin(caB.certPem)] }])
})

t.test('a host that stopped meanwhile takes nothing', async (t) => {
  const server = await bridgeServer(t, () => ({ bridges: [bridge], trust: now }))
  const h = host([caA.certPem], { stopped: () => true })
  t.notOk(await h.bridges.ask(server.address, 'untrusted'))
  t.same(h.offered, [])
  t.same(h.unbridged, [])
})

t.test('a failed request is logged at the level the host chooses, and the next waits its turn', async (t) => {
  const server = await bridgeServer(t, () => undefined)
  const h = host([caA.certPem], { failureLevel: (why) => (why === 'untrusted' ? 'warn' : 'debug') })
  t.notOk(await h.bridges.ask(server.address, 'refused'))
  t.match(h.log.entries.at(-1), { level: 'debug', message: `trust bridges from ${server.address} failed: ` })
  t.ok(h.log.entries.at(-1)?.fields?.trust_bridge_error)
  t.notOk(await h.bridges.ask(server.address, 'untrusted'), 'not due')
  t.equal(server.asked.length, 1)
  const plain = host([caA.certPem])
  t.notOk(await plain.bridges.ask(server.address, 'refused'))
  t.equal(plain.log.entries.at(-1)?.level, 'warn', 'warn unless told')
})

t.test("a person's earlier trust leads to the current host CAs only through signed bridges", async (t) => {
  const pins = (pems: string[] | undefined) => pems?.map(caPin)
  t.same(pins(hostCAsAcrossBridges({ bridges: [bridge], trust: now }, 'c1', [caA.certPem])), [caPin(caB.certPem)], 'A → B, then the set B signed')
  const caD = createCA('host CA D', 'c1')
  const twice = { bridges: [bridge, statement(3, [caC, caB]), statement(4, [caB, caD])], trust: statement(5, [caD]) }
  t.same(pins(hostCAsAcrossBridges(twice, 'c1', [caA.certPem])), [caPin(caD.certPem)], 'two rotations walked in one answer; a bridge signed by a CA not held is passed over')
  t.equal(hostCAsAcrossBridges({ bridges: [], trust: now }, 'c1', [caB.certPem]), undefined, 'no rotation since: nothing reached, the CA trusted is presented as it is')

  t.equal(hostCAsAcrossBridges({ bridges: [], trust: now }, 'c1', [caA.certPem]), undefined, 'no bridge kept: nothing reached')
  t.equal(hostCAsAcrossBridges({ bridges: [bridge], trust: statement(3, [caC]) }, 'c1', [caA.certPem]), undefined, 'the current set signed by a CA the chain did not reach')
  t.equal(hostCAsAcrossBridges({ bridges: [bridge], trust: now }, 'c2', [caA.certPem]), undefined, "another cluster's bridges")
  t.equal(hostCAsAcrossBridges({ bridges: [statement(2, [caC])], trust: statement(3, [caC]) }, 'c1', [caA.certPem]), undefined, 'a chain that does not start at the CA trusted')
  const tampered = { ...bridge, host_ca_certs: [caC.certPem, caA.certPem] }
  t.equal(hostCAsAcrossBridges({ bridges: [tampered], trust: statement(3, [caC]) }, 'c1', [caA.certPem]), undefined, 'a bridge changed after signing')
  t.equal(hostCAsAcrossBridges({ bridges: [bridge], trust: statement(2, [caB]) }, 'c1', [caA.certPem]), undefined, 'a current set not newer than the bridge (a replayed one)')
  t.equal(hostCAsAcrossBridges({ bridges: [bridge], trust: bridge }, 'c1', [caA.certPem]), undefined, 'the last bridge again as the current set')
  t.equal(hostCAsAcrossBridges({ bridges: [bridge], trust: now }, 'c1', [caA.certPem], 5), undefined, 'sets older than the one the last login took')
  t.same(pins(hostCAsAcrossBridges({ bridges: [bridge], trust: now }, 'c1', [caA.certPem], 1)), [caPin(caB.certPem)], 'newer ones are taken')
})

t.test('a CA trusted now cannot be walked back to the one it replaced', async (t) => {
  // The bridge into B is signed by B too: replayed to someone who trusts B, it names A.
  t.equal(hostCAsAcrossBridges({ bridges: [], trust: bridge }, 'c1', [caB.certPem]), undefined, 'as the current set')
  t.equal(hostCAsAcrossBridges({ bridges: [bridge], trust: statement(3, [caA, caB]) }, 'c1', [caB.certPem]), undefined, 'through a set that names both')
})
