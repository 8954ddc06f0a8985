// A proxy's keys stolen: the attacker serves the proxy's tunnel address with them, so a real
// `warren start` node dials it, and then spends the node's memory over the tunnel: a flood of
// stream SYNs, streams whose data the node never reads, window updates that would grow the
// node's send windows past 32 bits, and pings whose answers it never reads. The node must
// refuse what goes beyond its bounds (RST, or the tunnel closed) and its resident memory must
// stay within a generous bound of what it was before.

import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer, type TLSSocket } from 'node:tls'
import t, { type Test } from 'tap'
import type { TunnelServer } from '../proxy/tunnel-server.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { defaultConfig, Flag, FrameType, type Session, type Stream } from '../shared/yamux/index.ts'
import { AuthProcess, type Daemon, ProxyProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'
import { rogueTunnelServer } from './helpers/rogue-tunnels.ts'
import { until } from './helpers/until.ts'
import { frame } from './helpers/yamux.ts'

const MB = 1024 * 1024
/** What the node's resident memory may grow by under an attack. */
const RSS_BOUND = 50 * MB
/**
 * The same for unread streams: the tunnel's receive buffer held, and the bytes of the streams
 * reset to keep it, which are garbage until V8 collects them (whatever the count of streams:
 * 1,000 and 4,000 streams of 256 KiB both left the node about 66-70 MB larger).
 */
const UNREAD_RSS_BOUND = defaultConfig.maxSessionReceiveBuffer + 48 * MB

function rss(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  return Number(kb) * 1024
}

interface Attack {
  node: Daemon
  rogue: TunnelServer
  /** The TLS connections the node made to the attacker, newest last. */
  sockets: TLSSocket[]
}

async function nodeBehindStolenProxy(t: Test): Promise<Attack> {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-1'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-1')
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const [host, port] = [proxy.tunnel.slice(0, proxy.tunnel.lastIndexOf(':')), Number(proxy.tunnel.slice(proxy.tunnel.lastIndexOf(':') + 1))]
  await proxy.stop()
  const rogue = rogueTunnelServer(stolen)
  const sockets: TLSSocket[] = []
  const listener = createServer(
    { cert: stolen.tlsCertPem, key: stolen.tlsKeyPem, ca: stolen.hostCAPems, requestCert: true, rejectUnauthorized: false, ALPNProtocols: [TUNNEL_ALPN] },
    (socket: TLSSocket) => {
      sockets.push(socket)
      rogue.handle(socket, '127.0.0.1')
    },
  )
  listener.listen(port, host)
  await once(listener, 'listening')
  t.teardown(() => {
    rogue.close()
    listener.close()
    for (const socket of sockets) socket.destroy()
  })
  return { node, rogue, sockets }
}

/** The attacker's yamux session with the node, once the node holds its tunnel. */
async function tunnelOf(attack: Attack) {
  await until('the node to hold a tunnel to the stolen address', () => attack.rogue.list().some((tunnel) => !tunnel.session.isClosed), { timeoutMs: 60_000 })
  return attack.rogue.list().find((tunnel) => !tunnel.session.isClosed)!
}

/** Streams the node answered with RST, and those it took, once each has one answer. */
async function outcome(session: Session, streams: Stream[], answered: (stream: Stream) => boolean): Promise<{ refused: number; taken: number }> {
  await until('the node to answer every stream', () => streams.every((stream) => stream.destroyed || answered(stream)), { timeoutMs: 30_000 })
  // A stream the node resets after its window was sent looked taken a moment ago: the node
  // answers a ping after every frame sent before it, so its resets have all come by then.
  await session.ping()
  const refused = streams.filter((stream) => stream.destroyed).length
  return { refused, taken: streams.length - refused }
}

t.test('a stolen proxy cannot spend the node’s memory over its tunnel', { timeout: 120_000 }, async (t) => {
  const attack = await nodeBehindStolenProxy(t)
  const pid = attack.node.child.pid!
  let tunnel = await tunnelOf(attack)
  const before = rss(pid)
  const streamLimit = defaultConfig.maxIncomingStreams

  // 1. A flood of SYNs: the node takes as many streams as its session allows and resets the rest.
  // Each asks for a service the node does not have: a stream it took is answered, and ended.
  const answered = new Set<Stream>()
  const flood = Array.from({ length: 3000 }, () => {
    const stream = tunnel.session.open()
    stream.on('error', () => {})
    stream.on('data', () => answered.add(stream))
    stream.write('{"service":"port","name":"nothing-here"}\n')
    return stream
  })
  const syn = await outcome(tunnel.session, flood, (stream) => answered.has(stream))
  t.comment(`SYN flood: ${syn.taken} taken, ${syn.refused} reset, node RSS +${((rss(pid) - before) / MB).toFixed(1)} MB`)
  t.ok(syn.taken <= streamLimit, `the node took ${syn.taken} of 3000 streams (at most ${streamLimit})`)
  t.ok(syn.refused >= 3000 - streamLimit, `and reset ${syn.refused}`)
  for (const stream of flood) stream.destroy()
  await until('the flood streams to be gone', () => tunnel.session.numStreams <= 1, { timeoutMs: 20_000 })

  // 2. Streams the node never reads: a request it refuses, then a full window of bytes each.
  const window = Buffer.alloc(defaultConfig.initialStreamWindow, 'x')
  const unread = Array.from({ length: 2000 }, () => {
    const stream = tunnel.session.open()
    stream.on('error', () => {})
    stream.write('{"service":"port","name":"nothing-here"}\n')
    stream.write(window)
    return stream
  })
  const unreadOutcome = await outcome(tunnel.session, unread, (stream) => stream.sendWindow === 0)
  const held = rss(pid) - before
  t.ok(held < UNREAD_RSS_BOUND, `the node grew by ${(held / MB).toFixed(1)} MB for 2000 unread streams of 256 KiB (bound ${UNREAD_RSS_BOUND / MB} MB)`)
  t.ok(unreadOutcome.taken * window.length <= defaultConfig.maxSessionReceiveBuffer, `the node holds ${unreadOutcome.taken} full streams, within its receive buffer`)
  for (const stream of unread) stream.destroy()

  // 3. Window updates past 2^32-1 on a stream: the node closes the tunnel as a protocol error.
  const socket = attack.sockets.at(-1)!
  const probe = tunnel.session.open()
  probe.on('error', () => {})
  probe.write('{"service":"port","name":"nothing-here"}\n')
  await once(probe, 'data')
  socket.write(frame(FrameType.WindowUpdate, 0, probe.id, 0xffff_0000))
  socket.write(frame(FrameType.WindowUpdate, 0, probe.id, 0xffff_0000))
  await until('the node to close the tunnel', () => tunnel.session.isClosed, { timeoutMs: 20_000 })
  t.pass('the node closed the tunnel that grew its send window past 2^32-1')

  // 4. Pings whose answers the attacker never reads: the node stops reading rather than queue answers.
  tunnel = await tunnelOf(attack)
  const pinger = attack.sockets.at(-1)!
  pinger.pause()
  const beforePings = rss(pid)
  const pings = Buffer.concat(Array.from({ length: 20_000 }, (_, i) => frame(FrameType.Ping, Flag.SYN, 0, i)))
  for (let round = 0; round < 100; round++) pinger.write(pings) // 2,000,000 pings, 24 MB
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const afterPings = rss(pid) - beforePings
  t.ok(afterPings < RSS_BOUND, `the node grew by ${(afterPings / MB).toFixed(1)} MB for 2,000,000 unread ping answers`)
  pinger.destroy()

  t.ok(attack.node.running, 'the node is still running')
  await until('the node to come back to the tunnel', () => attack.rogue.list().some((tunnel) => !tunnel.session.isClosed), { timeoutMs: 60_000 })
})
