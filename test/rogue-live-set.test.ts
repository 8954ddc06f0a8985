// A proxy's keys stolen, with proxies behind a real round-robin balancer (HAProxy):
// the attacker kills the proxy, serves its tunnel port with its keys and keeps its place in
// the live set by heartbeating with them. Through the tunnel the node opens to it, the
// attacker then announces live sets that would make the node drop its tunnels to the real
// proxies. The node (a real `warren start` process) must take only sets the auth server
// signed, newer than the newest it holds; and once `warrenctl nodes rm` removes the stolen
// proxy, the node must close its tunnel to it, and close again any it reaches later.

import { once } from 'node:events'
import { createServer as createTcpServer, type Socket } from 'node:net'
import { createServer, type TLSSocket } from 'node:tls'
import t from 'tap'
import { ApiClient } from '../shared/api-client.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { type ProxyMessageIn, sendToAgent } from '../shared/protocol/control.ts'
import type { LiveSet } from '../shared/protocol/proxies.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { signLiveSet } from '../shared/signed-live-set.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { createCA } from '../shared/x509.ts'
import { haproxyUnavailable, startBalancer } from './helpers/balancer.ts'
import { AuthProcess, freePort, proxiesBehindBalancer, startNode, tempDir, waitForNode, warren } from './helpers/cluster.ts'
import { rogueTunnelServer } from './helpers/rogue-tunnels.ts'
import { until } from './helpers/until.ts'

/** Hands the socket on once HAProxy's PROXY v2 header (16 bytes and the length they give) has been read off it. */
function afterProxyHeader(socket: Socket, next: (socket: Socket) => void): void {
  let buffered = Buffer.alloc(0)
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    if (buffered.length < 16 || buffered.length < 16 + buffered.readUInt16BE(14)) return
    socket.off('data', onData)
    socket.pause()
    socket.unshift(buffered.subarray(16 + buffered.readUInt16BE(14)))
    next(socket)
  }
  socket.on('data', onData)
  socket.on('error', () => {})
}

t.test('a stolen proxy cannot make a node drop its other tunnels, nor keep its own once removed', { timeout: 240_000, skip: haproxyUnavailable() }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const balancer = `127.0.0.1:${await freePort()}`
  const proxies = await proxiesBehindBalancer(auth, pin, 3, balancer, undefined, false)
  t.teardown(() => Promise.all(proxies.map((proxy) => proxy.stop())))
  const lb = startBalancer(balancer, proxies)
  t.teardown(() => lb.kill())
  const [p0, p1, p2] = proxies.map((proxy) => loadIdentity(proxy.dataDir, 'proxy')!.hostId)
  const stolen = loadIdentity(proxies[1].dataDir, 'proxy')!
  const asStolen = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
  t.teardown(() => asStolen.close())

  // The third proxy waits in the wings. A genuine set from a moment when the first was away
  // too, which the attacker keeps for a replay: it names the stolen proxy alone.
  await proxies[2].stop()
  await proxies[0].stop()
  const older: LiveSet = await asStolen.call('GET /v1/proxies')
  t.same(older.proxies, [p1], 'the set signed while the first proxy was away')
  await proxies[0].start()

  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxies[0].web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-1'])
  t.teardown(() => node.stop())
  const tunnelsAre = (ids: string[]) => (status: WarrenStatus) => (status.node?.tunnel?.proxies.map((p) => p.proxy_id) ?? []).join() === [...ids].sort().join()
  await node.waitForStatus('a tunnel to each proxy', tunnelsAre([p0, p1]), 30_000).catch((error: Error) => {
    // Which proxy the node missed, and why it might have: each one's state and last words.
    const states = [proxies[0], proxies[1]].map((proxy, i) => `p${i} ${[p0, p1][i]} running=${proxy.daemon.running}:\n${proxy.daemon.stderr.slice(-3000)}`)
    throw new Error(`${error.message}\n${states.join('\n')}`)
  })
  await waitForNode(auth, 'pi-1')

  // The attacker: the proxy killed, its place in the live set kept with its keys, its tunnel port served by them.
  await proxies[1].stop('SIGKILL')
  const heartbeats = setInterval(() => void asStolen.call('POST /v1/proxies/heartbeat', { body: {} }).catch(() => {}), 1000)
  t.teardown(() => clearInterval(heartbeats))
  const rogue = rogueTunnelServer(stolen)
  // Once it holds the node's tunnel, the attacker answers further dials as the first proxy:
  // its welcome names that proxy's ID, under the stolen proxy's certificate.
  const impostor = rogueTunnelServer({ ...stolen, hostId: p0 })
  let reached = 0
  let impostorReached = 0
  const tlsServer = createServer(
    { cert: stolen.tlsCertPem, key: stolen.tlsKeyPem, ca: stolen.hostCAPems, requestCert: true, rejectUnauthorized: false, ALPNProtocols: [TUNNEL_ALPN] },
    (tls: TLSSocket) => {
      reached++
      if (posing && rogue.size > 0) {
        impostorReached++
        impostor.handle(tls, '127.0.0.1')
      } else rogue.handle(tls, '127.0.0.1')
    },
  )
  let posing = false
  const listener = createTcpServer((socket) => afterProxyHeader(socket, (raw) => tlsServer.emit('connection', raw)))
  const tunnelAddr = proxies[1].tunnel
  listener.listen(Number(tunnelAddr.slice(tunnelAddr.lastIndexOf(':') + 1)), tunnelAddr.slice(0, tunnelAddr.lastIndexOf(':')))
  await once(listener, 'listening')
  t.teardown(() => {
    rogue.close()
    impostor.close()
    listener.close()
  })
  await until('the node to open a tunnel to the attacker', () => rogue.size === 1, { timeoutMs: 60_000 })
  await node.waitForStatus('a tunnel to each again', tunnelsAre([p0, p1]), 30_000)

  const tunnel = () => node.status().then((status) => status.node!.tunnel!)
  const send = (message: ProxyMessageIn) => sendToAgent(rogue.list()[0]!.control!, message)
  const attackerCA = createCA('attacker host CA', stolen.clusterName)
  const current: LiveSet = await asStolen.call('GET /v1/proxies')
  t.same(current.proxies, [p0, p1].sort(), 'the auth server signs both')
  const forgeries: [string, Extract<ProxyMessageIn, { type: 'proxies' }>][] = [
    ['itself alone, unsigned', { type: 'proxies', ids: [p1] }],
    [
      'itself alone, signed by a CA of its own',
      { type: 'proxies', ids: [p1], signed: signLiveSet(stolen.clusterName, [p1], [{ certPem: attackerCA.certPem, key: attackerCA.key }]) },
    ],
    ["itself alone, under the auth server's signature of both", { type: 'proxies', ids: [p1], signed: current.proxies_signed }],
  ]
  for (const [what, message] of forgeries) {
    const { live_sets_refused } = await tunnel()
    send(message)
    await until(`the node to refuse ${what}`, async () => (await tunnel()).live_sets_refused === live_sets_refused + 1, { timeoutMs: 10_000 })
    const after = await tunnel()
    t.same(after.live_set, [p0, p1].sort(), `${what}: the node keeps the signed set`)
    t.same(after.proxies.map((p) => p.proxy_id).sort(), [p0, p1].sort(), `${what}: and its tunnel to the real proxy`)
  }
  // The genuine set from when the first proxy was away, replayed. The node passes it over
  // as older than its own; an unsigned set sent after it shows it has been read.
  const { live_sets_refused } = await tunnel()
  send({ type: 'proxies', ids: older.proxies, signed: older.proxies_signed })
  send({ type: 'proxies', ids: [p1] })
  await until('the node to read the replay', async () => (await tunnel()).live_sets_refused === live_sets_refused + 1, { timeoutMs: 10_000 })
  const replayed = await tunnel()
  t.same(replayed.live_set, [p0, p1].sort(), 'the older set is not taken')
  t.same(replayed.proxies.map((p) => p.proxy_id).sort(), [p0, p1].sort(), 'the real proxy keeps its tunnel')
  t.equal(replayed.live_sets_refused, live_sets_refused + 1)
  const shown = await warren(['status', `--data-dir=${nodeDir}`])
  t.match(shown.stdout, new RegExp(`^Refused +${replayed.live_sets_refused} live proxy set`, 'm'), '`warren status` shows the refusals')

  // The first proxy goes away for a moment (a restart, a network blip), and the balancer
  // sends the node's dials to the attacker, who welcomes them as the first proxy. Were the
  // node to believe it, it would hold "both" and never dial the real first proxy again.
  posing = true
  await proxies[0].stop('SIGKILL')
  await until('a dial to reach the attacker posing as the first proxy', () => impostorReached > 0, { timeoutMs: 60_000 })
  await proxies[0].start()
  await node.waitForStatus('a tunnel to the real first proxy again', tunnelsAre([p0, p1]), 60_000)
  await until('the real first proxy to hold the tunnel', async () => (await proxies[0].daemon.status()).proxy?.tunnels.count === 1, { timeoutMs: 60_000 })
  t.equal(impostor.size, 0, 'the node holds no tunnel whose welcome names another proxy than its certificate')
  posing = false

  // The theft found: the proxy is removed. The real proxies announce a set without it, and
  // the node closes its tunnel to the attacker, whose heartbeats are refused from now on.
  t.equal((await auth.ctl(['nodes', 'rm', 'proxy-1'])).code, 0)
  await node.waitForStatus('the tunnel to the removed proxy to close', tunnelsAre([p0]), 20_000)
  t.same((await tunnel()).live_set, [p0])
  await t.rejects(asStolen.call('POST /v1/proxies/heartbeat', { body: {} }), 'the removed proxy can no longer heartbeat')

  // The third proxy joins, and is killed: the node looks for it while its record lasts, and
  // the balancer sends those dials to the attacker. Each such tunnel is closed at once.
  await proxies[2].start()
  await node.waitForStatus('a tunnel to the third proxy', tunnelsAre([p0, p2]), 30_000)
  const before = reached
  await proxies[2].stop('SIGKILL')
  await until('a dial to reach the attacker', () => reached > before, { timeoutMs: 60_000 })
  await node.waitForStatus('only the tunnel to the remaining proxy', tunnelsAre([p0]), 20_000)
  t.equal(rogue.size, 0, 'the attacker holds no tunnel of the node')
})
