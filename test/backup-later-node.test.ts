// A node that joined after the backup a restore brought back: the auth server no longer
// knows its host, but its certificate is still valid, so the proxy takes its TLS connection
// and refuses the tunnel only at the hello. The node must not take a tunnel that opened for
// a success and dial again at once, forever: it backs off as after a failed dial, and says
// at ERROR what re-admits it. Real processes; counted from the proxy's metrics and the
// node's JSON log fields over a window.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, freePort, ProxyProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

/** The value of a counter with one label on a diag endpoint's /metrics (0 when absent). */
async function counter(address: string, name: string, label: string, value: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${label}="${value}"}`))
  return line ? Number(line.split(' ').at(-1)) : 0
}

t.test('a node that joined after the backup backs off when the proxies refuse it at its hello, and is told to join again', async (t) => {
  const port = await freePort()
  const auth = await new AuthProcess({ port }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxyDiag = `127.0.0.1:${await freePort()}`
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, diagAddr: proxyDiag }).start()
  t.teardown(() => proxy.stop())

  const backup = join(tempDir(), 'warren.db')
  t.equal((await auth.ctl(['backup', backup])).code, 0, 'backed up')

  const nodeDir = tempDir()
  const nodeDiag = `127.0.0.1:${await freePort()}`
  const config = join(nodeDir, 'node.yaml')
  writeFileSync(config, `diag_addr: ${nodeDiag}\nssh_service:\n  listen_addr: 127.0.0.1:0\n`)
  const node = startNode(
    [`--config=${config}`, `--data-dir=${join(nodeDir, 'data')}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=later'],
    { WARREN_LOG_FORMAT: 'json' },
  )
  t.teardown(() => node.stop())
  await waitForNode(auth, 'later')

  await auth.stop()
  t.equal((await auth.ctl(['restore', backup])).code, 0, 'restored')
  const back = await new AuthProcess({ port, dataDir: auth.dataDir }).start()
  t.teardown(() => back.stop())

  const declined = () => counter(proxyDiag, 'warren_proxy_tunnel_declines_total', 'reason', 'unregistered')
  // The proxy learns from its presence report that the auth server does not know the host.
  await proxy.daemon.waitFor('a tunnel refused at its hello', async () => (await declined()) >= 1, 60_000)

  const windowMs = 8000
  const [declinedBefore, redialsBefore] = [await declined(), await counter(nodeDiag, 'warren_node_reconnects_total', 'reason', 'refused')]
  await new Promise((resolve) => setTimeout(resolve, windowMs))
  const [declinedAfter, redialsAfter] = [await declined(), await counter(nodeDiag, 'warren_node_reconnects_total', 'reason', 'refused')]
  // Dialling again at once came to hundreds a second; backing off from 1 s, a handful at most.
  t.ok(declinedAfter - declinedBefore <= 12, `the proxy refused ${declinedAfter - declinedBefore} tunnels of the node in ${windowMs} ms`)
  t.ok(redialsAfter - redialsBefore <= 12, `the node dialled again ${redialsAfter - redialsBefore} times after refusals in ${windowMs} ms`)
  t.ok(node.running, 'the node keeps running')

  const refusals = () => node.logEntries().filter((entry) => entry.tunnel_refused === 'unregistered')
  await node.waitFor('the node to log the refusal', () => refusals().length >= 1, 10_000)

  const told = refusals().at(-1)!
  t.equal(told.level, 'error', 'the refusal is logged at ERROR')
  t.equal(told.readmit, 'warrenctl nodes add --nodename=later', 'with the command that makes the token re-admitting it')
  t.equal(told.remove, join(nodeDir, 'data', 'identity'), 'and the identity to remove before starting with it')
  t.ok(typeof told.retry_in_ms === 'number', 'and when it dials again')
})
