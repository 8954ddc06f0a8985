// A node remembers where its tunnels go: restarted with its identity on disk it dials that
// address at once, without asking the proxy; when the proxies moved it, the node asks again.
// Right after joining it continues in a fresh process image that starts the same way.

import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AuthProcess, freePort, ProxyProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

t.test('a restarted node dials the remembered tunnel address, and follows it when it moves', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const token = await auth.token(['tokens', 'add', '--type=proxy'])
  const webPort = await freePort()
  const first = await new ProxyProcess({ auth, token, pin, webListenAddr: `127.0.0.1:${webPort}` }).start()
  const nodeDir = tempDir()
  const remembered = () => JSON.parse(readFileSync(join(nodeDir, 'tunnel-address.json'), 'utf8')) as { host: string; port: number }

  const joined = startNode([`--data-dir=${nodeDir}`, `--auth-server=${first.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=mover'])
  await joined.waitFor('the first tunnel', () => /tunnel to proxy \S+ open/.test(joined.stderr))
  t.equal(`${remembered().host}:${remembered().port}`, first.tunnel, 'the discovered address is remembered')
  // Having joined and asked, the node continues as a fresh process image (same PID) that
  // starts from what is on disk, so it does not keep the HTTPS client loaded.
  t.match(joined.stderr, /identity and tunnel address stored: continuing in a fresh process image[^]*using the identity stored/)
  t.match(joined.stderr, `reverse tunnels through ${first.tunnel} (remembered from the last start)`)
  t.equal((joined.stderr.match(/continuing in a fresh process image/g) ?? []).length, 1, 'only once')
  await joined.stop()

  const again = startNode([`--data-dir=${nodeDir}`])
  await again.waitFor('a tunnel after the restart', () => /tunnel to proxy \S+ open/.test(again.stderr))
  t.match(again.stderr, `reverse tunnels through ${first.tunnel} (remembered from the last start)`, 'no discovery on a restart')
  await again.stop()

  // The proxy comes back with the same web address and another tunnel port.
  await first.stop()
  const moved = await new ProxyProcess({ auth, token, pin, dataDir: first.dataDir, webListenAddr: `127.0.0.1:${webPort}` }).start()
  t.teardown(() => moved.stop())
  t.not(moved.tunnel, first.tunnel)
  const third = startNode([`--data-dir=${nodeDir}`])
  t.teardown(() => third.stop())
  await third.waitFor('a tunnel to the moved address', () => /tunnel to proxy \S+ open/.test(third.stderr), 30_000)
  t.match(third.stderr, `the proxies moved the tunnel address from ${first.tunnel} to ${moved.tunnel}`)
  t.equal(`${remembered().host}:${remembered().port}`, moved.tunnel, 'the new address is remembered')
  t.match(await waitForNode(auth, 'mover'), /⟵ Tunnel/, 'the node is present through its tunnel')
})
