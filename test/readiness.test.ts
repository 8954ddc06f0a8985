// /readyz as a load balancer or an orchestrator reads it: a node is ready while it holds a
// tunnel, says what it lacks (503) when its only proxy stops, and is ready again once the
// proxy is back; an auth server likewise follows its backend. A bad --diag-addr is refused before anything starts.

import { existsSync, readdirSync } from 'node:fs'
import t from 'tap'
import { AuthProcess, freePort, ProxyProcess, startNode, tempDir, waitForNode, warren } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'
import { until } from './helpers/until.ts'

async function readyz(address: string): Promise<{ status: number; body: { ready: boolean; missing?: Record<string, string> } }> {
  const response = await fetch(`http://${address}/readyz`)
  return { status: response.status, body: (await response.json()) as { ready: boolean; missing?: Record<string, string> } }
}

t.test("a node's /readyz follows its tunnel", async (t) => {
  const diag = { auth: `127.0.0.1:${await freePort()}`, proxy: `127.0.0.1:${await freePort()}`, node: `127.0.0.1:${await freePort()}` }
  const auth = await new AuthProcess({ diagAddr: diag.auth }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  // Fixed ports, so the proxy comes back where the node dials.
  const ports = { webListenAddr: `127.0.0.1:${await freePort()}`, tunnelListenAddr: `127.0.0.1:${await freePort()}` }
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, diagAddr: diag.proxy, ...ports }).start()
  t.teardown(() => proxy.stop())
  const node = startNode([
    `--auth-server=${proxy.web}`,
    `--token=${await auth.token()}`,
    `--ca-pin=${pin}`,
    '--nodename=ready',
    `--data-dir=${tempDir()}`,
    `--diag-addr=${diag.node}`,
  ])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'ready')

  t.same(await readyz(diag.auth), { status: 200, body: { ready: true } }, 'the auth server is ready: its backend answers')
  await until('the proxy to hear the live set', async () => (await readyz(diag.proxy)).status === 200, { timeoutMs: 20_000 })
  await until('the node to hold its tunnel', async () => (await readyz(diag.node)).status === 200, { timeoutMs: 20_000 })
  t.same(await readyz(diag.node), { status: 200, body: { ready: true } }, 'the node is ready while it holds a tunnel')

  await proxy.stop()
  let down = await readyz(diag.node)
  await until('the node to notice its tunnel is gone', async () => (down = await readyz(diag.node)).status === 503, { timeoutMs: 20_000 })
  t.equal(down.status, 503, 'without its tunnel the node is not ready')
  t.equal(down.body.ready, false)
  t.match(down.body.missing, { node: /^no tunnel held/ }, 'and says what it lacks')
  t.equal((await fetch(`http://${diag.node}/healthz`)).status, 200, 'while /healthz says the process runs')

  await proxy.start()
  await until('the node to hold its tunnel again', async () => (await readyz(diag.node)).status === 200, { timeoutMs: 30_000 })
  t.same(await readyz(diag.node), { status: 200, body: { ready: true } }, 'with the tunnel back the node is ready again')
  const metrics = await (await fetch(`http://${diag.node}/metrics`)).text()
  const series = (name: string) => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1])
  t.equal(series('warren_node_reconnects_total{reason="proxy_stopping"}'), 1, 'its metrics count one redial for a proxy that stopped')
  t.equal(series('warren_node_tunnels'), 1, 'and the tunnel held again')
})

t.test("an auth server's /readyz follows its backend", { skip: etcdUnavailable() }, async (t) => {
  const etcd = await EtcdServer.start()
  t.teardown(() => etcd.stop())
  const diag = `127.0.0.1:${await freePort()}`
  const auth = await new AuthProcess({ diagAddr: diag, authServiceYaml: `  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${uniquePrefix('ready')}" }\n` }).start()
  t.teardown(() => auth.stop())
  t.same(await readyz(diag), { status: 200, body: { ready: true } }, 'ready while etcd answers')

  etcd.freeze()
  let down = await readyz(diag)
  await until('the auth server to notice its backend is gone', async () => (down = await readyz(diag)).status === 503, { timeoutMs: 20_000 })
  t.equal(down.body.ready, false, 'with its backend stuck the auth server is not ready')
  t.ok(down.body.missing?.auth, 'and says what it lacks')
  t.equal((await fetch(`http://${diag}/healthz`)).status, 200, 'while /healthz says the process runs')

  etcd.thaw()
  await until('the auth server to be ready again', async () => (await readyz(diag)).status === 200, { timeoutMs: 30_000 })
  t.same(await readyz(diag), { status: 200, body: { ready: true } }, 'with its backend back it is ready again')
})

t.test('a bad --diag-addr is refused before anything starts', async (t) => {
  const dataDir = tempDir()
  const result = await warren(['start', '--roles=node', `--data-dir=${dataDir}`, '--diag-addr=localhost', '--token=whatever-token-value', '--auth-server=127.0.0.1:1'])
  t.equal(result.code, 2, 'a usage error')
  t.match(result.stderr, /--diag-addr must include a port/, 'naming the flag and what is wrong')
  t.notOk(existsSync(`${dataDir}/identity`) && readdirSync(`${dataDir}/identity`).length > 0, 'nothing was stored')
})
