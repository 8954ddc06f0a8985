// Three proxies behind a real round-robin load balancer (HAProxy, TCP mode), one agent:
// it holds exactly one tunnel to each proxy, SSH works through every proxy, losing a proxy
// leaves the node reachable through the others, and the tunnel comes back with the proxy.

import { spawnSync } from 'node:child_process'
import t from 'tap'
import { ApiClient } from '../shared/api-client.ts'
import { loadIdentity, type NodeIdentity } from '../shared/identity-store.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { startBalancer } from './helpers/balancer.ts'
import { AuthProcess, freePort, type ProxyProcess, proxiesBehindBalancer, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'

const haproxy = spawnSync('haproxy', ['-v']).status === 0 ? undefined : 'HAProxy is not installed (apt-get install haproxy)'

/** How many proxies the node holds a tunnel to, as it reports on its status socket. */
const held = (count: number) => (status: WarrenStatus) => status.node?.tunnel?.proxies.length === count

t.test('an agent keeps one tunnel to each of three proxies behind HAProxy', { skip: haproxy }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const balancer = `127.0.0.1:${await freePort()}`
  // HAProxy announces each agent's real address with a PROXY v2 header; only it is trusted to.
  const proxies = await proxiesBehindBalancer(auth, pin, 3, balancer)
  t.teardown(() => Promise.all(proxies.map((proxy) => proxy.stop())))
  const lb = startBalancer(balancer, proxies)
  t.teardown(() => lb.kill())

  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxies[0].web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=fleet-1'])
  t.teardown(() => node.stop())
  const three = await node.waitForStatus('three tunnels', held(3), 10_000)
  t.same(
    three.node!.tunnel!.proxies.map((p) => p.proxy_id),
    three.node!.tunnel!.live_set,
    'one tunnel to each proxy of the live set',
  )
  t.equal(three.node!.tunnel!.live_set!.length, 3)
  await waitForNode(auth, 'fleet-1')

  await auth.ctl(['users', 'add', 'alice', `--logins=${testLogin()}`])
  const profile = tempDir('warren-user-')
  t.equal((await auth.ctl(['auth', 'sign', '--user=alice', `--out=${profile}`])).code, 0)
  const sshVia = (proxy: ProxyProcess) => warren(['ssh', `--identity=${profile}`, `--proxy=${proxy.web}`, `${testLogin()}@fleet-1`, 'echo', 'ok'])
  for (const [i, proxy] of proxies.entries()) {
    const result = await sshVia(proxy)
    t.equal(result.stdout, 'ok\n', `ssh through proxy ${i} (${result.stderr.trim()})`)
  }

  await proxies[2].stop('SIGKILL')
  await node.waitForStatus('the agent to lose one tunnel', held(2), 20_000)
  for (const proxy of proxies.slice(0, 2)) t.equal((await sshVia(proxy)).stdout, 'ok\n', 'still reachable through the others')

  await proxies[2].start()
  await node.waitForStatus('the third tunnel to return', held(3), 30_000)
  t.equal((await sshVia(proxies[2])).stdout, 'ok\n', 'reachable through the restarted proxy')

  // A proxy stopped cleanly leaves the live set at once, not when its record expires, and
  // is announced again once it is back; the agent then returns to it.
  const liveAs = async (identity: NodeIdentity) => {
    const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
    try {
      return (await client.request<{ proxies: string[] }>('GET', '/v1/proxies')).proxies.length
    } finally {
      await client.close()
    }
  }
  const live = () => liveAs(loadIdentity(proxies[0].dataDir, 'proxy')!)
  t.equal(await live(), 3, 'three live proxies')
  await t.rejects(liveAs(loadIdentity(nodeDir)!), { status: 403, message: /for proxies/ }, 'the live set is for proxies only, not nodes')
  await proxies[1].stop('SIGTERM')
  t.equal(await live(), 2, 'a proxy stopped with SIGTERM left the live set')
  await node.waitForStatus('the agent to hold two tunnels', held(2), 20_000)
  await proxies[1].start()
  t.equal(await live(), 3, 'and is back in it once restarted')
  await node.waitForStatus('the agent to return to it', held(3), 30_000)
  t.equal((await sshVia(proxies[1])).stdout, 'ok\n', 'reachable through it again')
})
