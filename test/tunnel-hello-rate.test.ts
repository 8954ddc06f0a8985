// A device that completes the handshake, says hello and closes, over and over (a stolen one,
// its agent modified), costs the proxy a registration each time: the proxy registers a host's
// tunnels at most HELLO_BURST at once, then one a second, and refuses the rest at the hello
// with a reason the agent backs off on. Real processes; counted from the proxy's metrics.

import t from 'tap'
import { AgentTunnel, type TunnelRefused } from '../agent/tunnel.ts'
import { HELLO_BURST, HELLO_EVERY_MS } from '../proxy/hello-rate.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { joinCluster } from '../shared/join.ts'
import { createLogger } from '../shared/log.ts'
import { AuthProcess, freePort, ProxyProcess } from './helpers/cluster.ts'

async function metric(address: string, series: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line ? Number(line.split(' ').at(-1)) : 0
}

t.test('a host saying hello in a loop is registered at the hello rate, and told why the rest are refused', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const diag = `127.0.0.1:${await freePort()}`
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, diagAddr: diag }).start()
  t.teardown(() => proxy.stop())
  /** A host joined as `nodename`, as a device's agent joins. */
  const join = async (nodename: string) => joinCluster({ authServer: proxy.web, token: await auth.token(), caPins: [pin], nodename, roles: ['node'], warn: () => {} })
  const colon = proxy.tunnel.lastIndexOf(':')
  /** A tunnel of the host `identity` to the proxy, not yet saying hello (activate() does). */
  const open = (identity: NodeIdentity) =>
    AgentTunnel.open({
      host: proxy.tunnel.slice(0, colon),
      port: Number(proxy.tunnel.slice(colon + 1)),
      identity,
      keepAliveIntervalMs: 15_000,
      labels: () => ({}),
      services: [],
      onStream: (stream) => stream.destroy(),
      log: createLogger('test', { level: 'error' }),
      connectTimeoutMs: 5000,
    })
  const identity = await join('looper')

  const opensBefore = await metric(diag, 'warren_proxy_tunnel_opens_total')
  const loops = 60
  const refusals: TunnelRefused[] = []
  const started = Date.now()
  for (let i = 0; i < loops; i++) {
    const tunnel = await open(identity)
    const closed = new Promise((resolve) => tunnel.once('close', resolve))
    tunnel.activate()
    // Refused: the proxy closes it; registered: this device closes it a moment later and goes again.
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 30))])
    if (tunnel.refusal) refusals.push(tunnel.refusal)
    tunnel.close()
  }
  const elapsedMs = Date.now() - started
  await new Promise((resolve) => setTimeout(resolve, 300))
  const opened = (await metric(diag, 'warren_proxy_tunnel_opens_total')) - opensBefore
  const declined = await metric(diag, 'warren_proxy_tunnel_declines_total{reason="rate_limited"}')

  // Registered at once, every hello of the loop would count; at the hello rate, a handful.
  const allowed = HELLO_BURST + Math.ceil(elapsedMs / HELLO_EVERY_MS) + 1
  t.ok(opened <= allowed, `${opened} of ${loops} hellos registered in ${elapsedMs} ms (at most ${allowed})`)
  t.ok(opened < loops / 2, 'far fewer than the hellos said')
  t.equal(opened + declined, loops, 'each other hello refused for its rate')
  t.ok(refusals.length > 0 && refusals.every((refusal) => refusal.reason === 'rate_limited'), 'the device is told why')
  t.ok(
    refusals.every((refusal) => refusal.retryAfterMs !== undefined && refusal.retryAfterMs > 0 && refusal.retryAfterMs <= HELLO_EVERY_MS),
    'and how long until the next hello is taken',
  )

  // Another host is not held back by this one's loop.
  const bystander = await open(await join('bystander'))
  const before = await metric(diag, 'warren_proxy_tunnel_opens_total')
  bystander.activate()
  await proxy.daemon.waitFor('the bystander registered', async () => (await metric(diag, 'warren_proxy_tunnel_opens_total')) === before + 1, 5000)
  t.equal(bystander.refusal, undefined, 'another host registers')
  bystander.close()
})
