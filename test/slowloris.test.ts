// Handshake slots under a slowloris: hundreds of connections from several loopback
// addresses send the first 5 bytes of a TLS record (`16 03 01 02 00`) and then nothing, at
// a proxy's web and tunnel ports and at the auth server, while a node restarts and a user
// connects. A connection holds no handshake slot before its whole ClientHello is in, and is
// closed when it does not deliver one in time; so the node gets its tunnel back, the user's
// `warren ssh` and the health probes succeed, and every idle connection is closed by the
// server. The gate's counts are read from the processes' status.

import { request as httpsRequest } from 'node:https'
import t from 'tap'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, type Daemon, ProxyProcess, signUser, startNode, tempDir, testLogin, warren } from './helpers/cluster.ts'
import { ATTACKERS, Slowloris } from './helpers/slowloris.ts'
import { until } from './helpers/until.ts'

/** GET /v1/health on the proxy's web port: true if it answered 200. */
function healthProbe(web: string): Promise<boolean> {
  const at = web.lastIndexOf(':')
  return new Promise((resolve) => {
    const req = httpsRequest({ host: web.slice(0, at), port: Number(web.slice(at + 1)), path: '/v1/health', rejectUnauthorized: false, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode === 200))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
    req.end()
  })
}

/** Whether the auth server lists the node as present through a tunnel. */
async function tunnelPresent(auth: AuthProcess, nodename: string): Promise<boolean> {
  const { nodes } = await auth.api<{ nodes: { nodename: string; tunnel: boolean }[] }>('GET', '/v1/nodes')
  return nodes.some((n) => n.nodename === nodename && n.tunnel)
}

t.test('a slowloris at the proxy and the auth server keeps no node or user out', async (t) => {
  // A short presence TTL, so that a node that stops leaves the list within seconds.
  const auth = await new AuthProcess({ authServiceYaml: '  heartbeat_ttl: 6s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const nodeDir = tempDir()
  const nodeArgs = [`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--ca-pin=${pin}`, '--nodename=pi-1']
  let node: Daemon = startNode([...nodeArgs, `--token=${await auth.token()}`])
  t.teardown(() => node.stop())
  await until("the node's tunnel", () => tunnelPresent(auth, 'pi-1'), { timeoutMs: 20_000 })
  const profile = await signUser(auth, proxy.web)
  const ssh = () => warren(['ssh', `--identity=${profile}`, `${testLogin()}@pi-1`, 'echo', 'reached'], { timeoutMs: 20_000 })
  t.equal((await ssh()).stdout, 'reached\n', 'the user reaches the node before the attack (the control case)')

  await node.stop()
  await until('the stopped node to leave the list', async () => !(await tunnelPresent(auth, 'pi-1')), { timeoutMs: 20_000 })

  // 900 connections at once (more per address than the servers keep waiting), then 40 new ones a second, over the three ports.
  const attack = new Slowloris([proxy.web, proxy.tunnel, auth.address], ATTACKERS, 3000)
  t.teardown(() => attack.destroy())
  attack.burst(900)
  attack.start(40)

  node = startNode(nodeArgs)
  await until("the restarted node's tunnel, during the attack", () => tunnelPresent(auth, 'pi-1'), { timeoutMs: 25_000 })
  t.pass('(a) the restarted node got its tunnel back')
  for (let i = 0; i < 3; i++) {
    const result = await ssh()
    t.equal(result.code, 0, `(b) the user's warren ssh succeeds during the attack (${result.stderr.trim()})`)
    t.equal(result.stdout, 'reached\n')
  }
  const probes = await Promise.all(Array.from({ length: 5 }, () => healthProbe(proxy.web)))
  t.same(probes, [true, true, true, true, true], "the proxy's health probes succeed")
  const status = await auth.ctl(['status'])
  t.equal(status.code, 0, `warrenctl reaches the auth server during the attack (${status.stderr.trim()})`)

  attack.stop()
  t.ok(await attack.allClosed(15_000), `(c) every idle connection was closed by the servers (${JSON.stringify(attack.counts)})`)
  t.equal(attack.counts.failed, 0, 'every attacking connection had connected')
  t.ok(attack.counts.connected >= 900, `${attack.counts.connected} attacking connections`)

  // What the servers counted.
  const gates: [string, Daemon, (status: WarrenStatus) => Record<string, number>][] = [
    ['proxy', proxy.daemon, (status) => status.proxy!.handshake_gate],
    ['auth server', auth.daemon, (status) => status.auth!.handshake_gate],
  ]
  for (const [name, daemon, gate] of gates) {
    const counts = gate(await daemon.waitForStatus(`the ${name}'s counts to settle`, (status) => gate(status).pending_hello === 0, 10_000))
    t.ok(counts.late_hello_closed > 0, `the ${name} closed connections whose ClientHello was late (${counts.late_hello_closed})`)
    t.ok(counts.hello_per_address_closed > 0, `and, per source address, the oldest of too many waiting (${counts.hello_per_address_closed})`)
  }
})
