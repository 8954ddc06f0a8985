// A proxy that missed part or all of a host CA rotation comes back by itself, as nodes do
// (test/rotation-bridge.test.ts, test/rotation-half-missed.test.ts): it learns what the
// cluster trusts now from the signed trust bridges, then recovers its certificate with the
// keys it registered, and nodes reach it again. Off from just after `init` (it trusts both
// CAs, its certificate is from the dropped one), off through a whole automatic rotation, and
// off for so long that its certificate expired as well (recovered within the recovery window).

import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import t, { type Test } from 'tap'
import { issuedByAny } from '../shared/cert-subject.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { caPin } from '../shared/pin.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, ProxyProcess, startNode, tempDir } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const tunnels = (status: WarrenStatus) => status.node?.tunnel?.proxies.length ?? 0

async function clusterWithNode(t: Test, name: string, authServiceYaml?: string) {
  const auth = await new AuthProcess({ authServiceYaml }).start()
  t.teardown(() => auth.stop())
  const pinA = await auth.pin()
  const token = await auth.token(['tokens', 'add', '--type=proxy'])
  const proxy = await new ProxyProcess({ auth, token, pin: pinA, debug: false }).start()
  t.teardown(() => proxy.stop())
  const nodeArgs = [`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--nodename=${name}`]
  const node = startNode([...nodeArgs, `--token=${await auth.token(['nodes', 'add', '--ttl=1h'])}`, `--ca-pin=${pinA}`])
  t.teardown(() => node.stop())
  const nodeJoined = await node.waitForStatus('a tunnel', (s) => tunnels(s) === 1)
  const joined = await proxy.daemon.waitForStatus('the proxy to report its certificate', (s) => s.proxy?.certificate.issuer_pin === pinA)
  const hostCAs = async () => (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  // The same data dir and addresses: the node dials the proxy where it was.
  const restart = async () => {
    const again = await new ProxyProcess({ auth, token, pin: pinA, debug: false, dataDir: proxy.dataDir, webListenAddr: proxy.web, tunnelListenAddr: proxy.tunnel }).start()
    t.teardown(() => again.stop())
    return again
  }
  // The node is off while the proxy is, and started after it (a node that stays up through
  // the rotation is test/rotation-half-missed.test.ts's).
  const restartNode = () => {
    const again = startNode(nodeArgs)
    t.teardown(() => again.stop())
    return again
  }
  return { auth, pinA, proxy, node, nodeId: nodeJoined.node!.host_id, proxyId: joined.proxy!.proxy_id, hostCAs, restart, restartNode }
}

/** The proxy is back: a certificate from `pin`, trusting it alone, the same proxy, and the node's tunnel through it. */
async function assertBack(t: Test, c: Awaited<ReturnType<typeof clusterWithNode>>, again: ProxyProcess, pin: string) {
  const back = await again.daemon.waitForStatus(
    'the proxy back with a certificate of the new CA',
    (s) => s.proxy?.certificate.issuer_pin === pin && s.proxy.trusted_host_ca_pins.join() === pin,
    60_000,
  )
  t.equal(back.proxy!.proxy_id, c.proxyId, 'the same proxy')
  const stored = loadIdentity(again.dataDir, 'proxy')!
  const ca = (await c.hostCAs())[0]
  t.same(stored.hostCAPems, [ca], 'its stored trust is the new CA alone')
  t.ok(issuedByAny(new X509Certificate(stored.tlsCertPem), [ca]), 'its stored certificate is from the new CA')
  const node = await c.restartNode().waitForStatus('the node to hold a tunnel to it', (s) => tunnels(s) === 1 && s.node?.certificate.issuer_pin === pin, 60_000)
  t.equal(node.node!.host_id, c.nodeId, 'the same node')
  await until('the proxy to hold the node', async () => ((await again.daemon.status()).proxy?.tunnels.count ?? 0) === 1, { timeoutMs: 30_000 })
}

t.test('a proxy off from init to standby comes back by itself', { timeout: 120_000 }, async (t) => {
  const c = await clusterWithNode(t, 'proxy-half-missed')
  const phase = async (name: string) => {
    const result = await c.auth.ctl(['auth', 'rotate', '--type=host', '--manual', `--phase=${name}`])
    t.equal(result.code, 0, `${name}: ${result.stderr.trim()}`)
  }
  await phase('init')
  await c.proxy.daemon.waitForStatus('the proxy to trust both CAs', (s) => (s.proxy?.trusted_host_ca_pins.length ?? 0) === 2, 30_000)
  await c.proxy.stop()
  await c.node.stop()
  t.equal(loadIdentity(c.proxy.dataDir, 'proxy')!.hostCAPems.length, 2, 'it stopped trusting both CAs')
  const pinB = (await c.hostCAs()).map(caPin).find((pin) => pin !== c.pinA)!
  await phase('update_clients')
  await phase('update_servers')
  await phase('standby')
  await until('one host CA', async () => (await c.hostCAs()).length === 1)
  t.same((await c.hostCAs()).map(caPin), [pinB], 'the old CA dropped')

  await assertBack(t, c, await c.restart(), pinB)
})

t.test('a proxy off through a whole automatic rotation comes back by itself', { timeout: 120_000 }, async (t) => {
  const c = await clusterWithNode(t, 'proxy-missed')
  await c.proxy.stop()
  await c.node.stop()
  const result = await c.auth.ctl(['auth', 'rotate', '--type=host', '--grace-period=12s'])
  t.equal(result.code, 0, `rotation started: ${result.stdout.trim()}${result.stderr.trim()}`)
  await until(
    'the rotation to reach standby',
    async () => {
      const cas = await c.hostCAs()
      return cas.length === 1 && caPin(cas[0]) !== c.pinA
    },
    { timeoutMs: 40_000 },
  )
  const pinB = caPin((await c.hostCAs())[0])
  t.same(loadIdentity(c.proxy.dataDir, 'proxy')!.hostCAPems.map(caPin), [c.pinA], 'the stopped proxy trusts the old CA alone')

  await assertBack(t, c, await c.restart(), pinB)
})

t.test('a proxy whose certificate expired while it was off through a rotation comes back by itself', { timeout: 150_000 }, async (t) => {
  const c = await clusterWithNode(t, 'proxy-expired', '  host_cert_ttl: 15s')
  await c.proxy.stop()
  await c.node.stop()
  const result = await c.auth.ctl(['auth', 'rotate', '--type=host', '--grace-period=12s'])
  t.equal(result.code, 0, `rotation started: ${result.stdout.trim()}${result.stderr.trim()}`)
  await until('the rotation to reach standby', async () => (await c.hostCAs()).length === 1 && caPin((await c.hostCAs())[0]!) !== c.pinA, { timeoutMs: 40_000 })
  const pinB = caPin((await c.hostCAs())[0]!)
  const stopped = loadIdentity(c.proxy.dataDir, 'proxy')!
  const expires = new X509Certificate(stopped.tlsCertPem).validToDate.getTime()
  await until("the stopped proxy's certificate to expire", () => Date.now() > expires + 1000, { timeoutMs: 30_000 })
  t.same(stopped.hostCAPems.map(caPin), [c.pinA], 'the stopped proxy trusts the old CA alone')

  // Its node is in the same state: it comes back too (test/rotation-expired.test.ts).
  await assertBack(t, c, await c.restart(), pinB)
})

t.test('a running proxy cut off from its auth server through a rotation comes back by itself', { timeout: 120_000 }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pinA = await auth.pin()
  // The proxy reaches the auth server through a port the test can cut: its connections are
  // then closed, and new ones at once.
  const link = { open: true }
  const open = new Set<() => void>()
  const [authHost, authPort] = [auth.address.split(':')[0]!, Number(auth.address.split(':')[1])]
  const relay = createServer((socket) => {
    if (!link.open) return socket.destroy()
    const upstream = connect(authPort, authHost)
    socket.pipe(upstream).pipe(socket)
    const close = () => {
      socket.destroy()
      upstream.destroy()
      open.delete(close)
    }
    open.add(close)
    socket.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  t.teardown(() => relay.close())
  const relayed = Object.create(auth, { address: { value: `127.0.0.1:${(relay.address() as { port: number }).port}` } }) as AuthProcess
  const proxy = await new ProxyProcess({ auth: relayed, token: await auth.token(['tokens', 'add', '--type=proxy']), pin: pinA, debug: false }).start()
  t.teardown(() => proxy.stop())
  const joined = await proxy.daemon.waitForStatus('the proxy to report its certificate', (s) => s.proxy?.certificate.issuer_pin === pinA)

  link.open = false
  for (const close of open) close()
  const hostCAs = async () => (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  const result = await auth.ctl(['auth', 'rotate', '--type=host', '--grace-period=12s'])
  t.equal(result.code, 0, `rotation started: ${result.stdout.trim()}${result.stderr.trim()}`)
  await until('the rotation to reach standby', async () => (await hostCAs()).length === 1 && caPin((await hostCAs())[0]!) !== pinA, { timeoutMs: 40_000 })
  const pinB = caPin((await hostCAs())[0]!)
  t.same((await proxy.daemon.status()).proxy!.trusted_host_ca_pins, [pinA], 'the cut-off proxy still trusts the old CA alone')
  link.open = true

  const back = await proxy.daemon.waitForStatus(
    'the proxy back with a certificate of the new CA',
    (s) => s.proxy?.certificate.issuer_pin === pinB && s.proxy.trusted_host_ca_pins.join() === pinB,
    30_000,
  )
  t.equal(back.proxy!.proxy_id, joined.proxy!.proxy_id, 'the same proxy')
  t.same(loadIdentity(proxy.dataDir, 'proxy')!.hostCAPems.map(caPin), [pinB], 'its stored trust is the new CA alone')
  // The auth server takes its identity again, and its heartbeats keep it in the live set.
  const stored = loadIdentity(proxy.dataDir, 'proxy')!
  const { ApiClient } = await import('../shared/api-client.ts')
  const client = new ApiClient({ server: auth.address, caPems: stored.hostCAPems, certPem: stored.tlsCertPem, keyPem: stored.tlsKeyPem, authServer: true })
  t.teardown(() => client.close())
  t.same((await client.request<{ proxies: string[] }>('GET', '/v1/proxies')).proxies, [back.proxy!.proxy_id], 'in the live set')
})
