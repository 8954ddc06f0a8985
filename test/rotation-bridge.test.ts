// Nodes that are off through whole host CA rotations (devices are off for weeks) come back by
// themselves: after standby their servers present a CA they do not trust, so they fetch the
// bridges the auth server kept at each standby, take them by the signature of the CA they do
// trust, and then recover their certificates. Two rotations in a row (A→B, B→C), a node in
// tunnel mode and one in direct mode, no operator action. And a relay holding the proxy's
// stolen keys that answers forged bridges changes nothing in what a node trusts.

import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { createServer as createHttpsServer } from 'node:https'
import { connect, createServer, type Server } from 'node:net'
import t, { type Test } from 'tap'
import { issuedByAny } from '../shared/cert-subject.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { caPin } from '../shared/pin.ts'
import type { ListedNode } from '../shared/protocol/admin.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { signTrust } from '../shared/trust-statement.ts'
import { createCA } from '../shared/x509.ts'
import { AuthProcess, type Daemon, ProxyProcess, startNode, tempDir } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const tunnels = (status: WarrenStatus) => status.node?.tunnel?.proxies.length ?? 0
const beats = (status: WarrenStatus) => status.node?.direct?.heartbeats.ok ?? 0

/** A TCP port that passes connections to `target.port`, which the test may change. */
async function switchablePort(t: Test, target: { port: number }): Promise<string> {
  const server: Server = createServer((socket) => {
    const upstream = connect(target.port, '127.0.0.1')
    socket.pipe(upstream).pipe(socket)
    const close = () => {
      socket.destroy()
      upstream.destroy()
    }
    socket.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return `127.0.0.1:${(server.address() as { port: number }).port}`
}

t.test('nodes off through two host CA rotations come back by trust bridges', { timeout: 150_000 }, async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  heartbeat_ttl: 6s' }).start()
  t.teardown(() => auth.stop())
  const pinA = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin: pinA, debug: false }).start()
  t.teardown(() => proxy.stop())
  const token = await auth.token(['nodes', 'add', '--ttl=1h'])

  const dirs = { tunnel: tempDir(), direct: tempDir(), attacked: tempDir() }
  // The attacked node joins through a port the test later hands to the attacker's relay.
  const proxyWebPort = { port: Number(proxy.web.split(':')[1]) }
  const attackedServer = await switchablePort(t, proxyWebPort)
  const nodes: Daemon[] = []
  t.teardown(async () => {
    for (const node of nodes) await node.stop()
  })
  const start = (dir: string, server: string, name: string, withToken: boolean) => {
    const node = startNode([`--data-dir=${dir}`, `--auth-server=${server}`, `--nodename=${name}`, ...(withToken ? [`--token=${token}`, `--ca-pin=${pinA}`] : [])])
    nodes.push(node)
    return node
  }
  const first = {
    tunnel: start(dirs.tunnel, proxy.web, 'bridge-tunnel', true),
    direct: start(dirs.direct, auth.address, 'bridge-direct', true),
    attacked: start(dirs.attacked, attackedServer, 'bridge-attacked', true),
  }
  const joined = {
    tunnel: await first.tunnel.waitForStatus('the tunnel node to hold a tunnel', (s) => tunnels(s) === 1),
    direct: await first.direct.waitForStatus('the direct node to heartbeat', (s) => beats(s) >= 1),
    attacked: await first.attacked.waitForStatus('the attacked node to hold a tunnel', (s) => tunnels(s) === 1),
  }
  for (const node of Object.values(first)) await node.stop()
  const caA = loadIdentity(dirs.tunnel)!.hostCAPems[0]
  t.equal(caPin(caA), pinA)

  // Two automatic host rotations while the nodes are off: A→B, then B→C.
  const hostCAs = async () => (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  const rotateOnce = async (from: string): Promise<string> => {
    const result = await auth.ctl(['auth', 'rotate', '--type=host', '--grace-period=12s'])
    t.equal(result.code, 0, `rotation started: ${result.stdout.trim()}${result.stderr.trim()}`)
    await until(
      'the rotation to reach standby',
      async () => {
        const cas = await hostCAs()
        return cas.length === 1 && caPin(cas[0]) !== from
      },
      { timeoutMs: 40_000 },
    )
    const to = caPin((await hostCAs())[0])
    await proxy.daemon.waitForStatus('the proxy to hold a certificate from the new CA', (s) => s.proxy?.certificate.issuer_pin === to, 30_000)
    return to
  }
  const pinB = await rotateOnce(pinA)
  const pinC = await rotateOnce(pinB)
  const caC = (await hostCAs())[0]

  // The bridges are public: the one out of A leads to B, and B's to C.
  const { ApiClient } = await import('../shared/api-client.ts')
  const anonymous = new ApiClient({ server: proxy.web })
  const kept = await anonymous.call('GET /v1/trust/bridges', { query: { pin: pinA } })
  await anonymous.close()
  t.same(
    kept.bridges.map((bridge) => bridge.host_ca_certs.map(caPin)),
    [
      [pinB, pinA],
      [pinC, pinB],
    ],
    'the auth server kept a bridge at each standby, relayed by the proxy',
  )

  // Presence comes only from accepted heartbeats and tunnels: the nodes are off, so offline.
  const listed = async () => (await auth.api<{ nodes: ListedNode[] }>('GET', '/v1/nodes?all=true')).nodes
  const ids = Object.values(joined).map((status) => status.node!.host_id)
  await until('the stopped nodes to be listed offline', async () => (await listed()).filter((node) => ids.includes(node.host_id)).every((node) => node.status === 'offline'), {
    timeoutMs: 30_000,
  })

  // The attacker stands where the attacked node joined, with the proxy's stolen keys, and
  // answers bridges it forged: signed by a CA of its own, and by the proxy's key under A's pin.
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const evil = createCA('evil host CA', 'test-cluster')
  const evilUser = sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey, 'evil user CA')
  const forged = (hostCAs: string[]) => ({ cluster_name: 'test-cluster', version: Number.MAX_SAFE_INTEGER, host_ca_certs: hostCAs, user_ca_ssh_keys: [evilUser] })
  const answer = {
    bridges: [
      signTrust(forged([evil.certPem, caA]), [{ certPem: evil.certPem, key: evil.key }]),
      signTrust(forged([stolen.tlsCertPem, caA]), [{ certPem: caA, key: createPrivateKey(stolen.tlsKeyPem) }]),
    ],
    trust: signTrust(forged([evil.certPem]), [{ certPem: evil.certPem, key: evil.key }]),
  }
  const asked: string[] = []
  const relay = createHttpsServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://relay')
    if (url.pathname !== '/v1/trust/bridges') return res.writeHead(404).end('{}')
    asked.push(url.searchParams.get('pin') ?? '')
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer))
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  t.teardown(() => relay.close())
  proxyWebPort.port = (relay.address() as { port: number }).port

  const again = {
    tunnel: start(dirs.tunnel, proxy.web, 'bridge-tunnel', false),
    direct: start(dirs.direct, auth.address, 'bridge-direct', false),
    attacked: start(dirs.attacked, attackedServer, 'bridge-attacked', false),
  }

  const back = (s: WarrenStatus) => s.node?.certificate.issuer_pin === pinC && s.node.trusted_host_ca_pins.join() === pinC
  const tunnelBack = await again.tunnel.waitForStatus('the tunnel node to come back', (s) => back(s) && tunnels(s) === 1, 60_000)
  t.equal(tunnelBack.node!.host_id, joined.tunnel.node!.host_id, 'the tunnel node is the same host')
  const directBack = await again.direct.waitForStatus('the direct node to come back', (s) => back(s) && beats(s) >= 1, 60_000)
  t.equal(directBack.node!.host_id, joined.direct.node!.host_id, 'the direct node is the same host')
  for (const dir of [dirs.tunnel, dirs.direct]) {
    const stored = loadIdentity(dir)!
    t.same(stored.hostCAPems, [caC], 'the stored trust is the new CA alone')
    t.ok(issuedByAny(new X509Certificate(stored.tlsCertPem), [caC]), 'the stored certificate is from the new CA')
  }
  await until('both to be listed online', async () => {
    const online = (await listed()).filter((node) => node.status === 'online').map((node) => node.host_id)
    return online.includes(joined.tunnel.node!.host_id) && online.includes(joined.direct.node!.host_id)
  })

  // The attacked node asked the relay and refused both forgeries: it trusts A alone, as before.
  const refused = await again.attacked.waitForStatus('the attacked node to refuse the forged bridges', (s) => (s.node?.trust.refused ?? 0) >= 2, 30_000)
  t.ok(asked.includes(pinA), 'the attacked node asked for bridges out of A')
  t.same(refused.node!.trusted_host_ca_pins, [pinA], 'it trusts what it trusted')
  t.equal(refused.node!.trust.version, joined.attacked.node!.trust.version, 'at the version it held')
  t.same(loadIdentity(dirs.attacked)!.hostCAPems, [caA], 'and its identity files are unchanged')
  t.equal(refused.node!.certificate.issuer_pin, pinA, 'its certificate is still the one from A')
})
