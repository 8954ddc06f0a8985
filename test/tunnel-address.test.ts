// A node remembers where its tunnels go: restarted with its identity on disk it dials that
// address at once, without asking the proxy; when the proxies moved it, the node asks again.
// Right after joining it continues in a fresh process image that starts the same way.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, freePort, ProxyProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

const tunnelHeld = (status: WarrenStatus) => (status.node?.tunnel?.proxies.length ?? 0) > 0

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
  const afterJoin = await joined.waitForStatus('the first tunnel', tunnelHeld)
  t.equal(`${remembered().host}:${remembered().port}`, first.tunnel, 'the discovered address is remembered')
  // Having joined and asked, the node continues as a fresh process image (same PID) that
  // starts from what is on disk, so it does not keep the HTTPS client loaded.
  t.equal(afterJoin.process.pid, joined.child.pid)
  t.ok(afterJoin.process.fresh_image, 'the node continued in a fresh process image')
  const environment = readFileSync(`/proc/${joined.child.pid}/environ`, 'utf8').split('\0')
  t.ok(environment.includes(`MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? '2'}`), 'with the malloc arenas its systemd unit would give it')
  t.equal(afterJoin.node!.tunnel!.address, first.tunnel, 'which dials the remembered address')
  t.equal(afterJoin.node!.tunnel!.discoveries, 0, 'without asking the proxy again')
  await joined.stop()

  const again = startNode([`--data-dir=${nodeDir}`])
  const restarted = await again.waitForStatus('a tunnel after the restart', tunnelHeld)
  t.notOk(restarted.process.fresh_image, 'with its identity on disk, it has nothing to shed')
  t.equal(restarted.node!.tunnel!.address, first.tunnel)
  t.equal(restarted.node!.tunnel!.discoveries, 0, 'no discovery on a restart')
  await again.stop()

  // The proxy comes back with the same web address and another tunnel port.
  await first.stop()
  const moved = await new ProxyProcess({ auth, token, pin, dataDir: first.dataDir, webListenAddr: `127.0.0.1:${webPort}` }).start()
  t.teardown(() => moved.stop())
  t.not(moved.tunnel, first.tunnel)
  const third = startNode([`--data-dir=${nodeDir}`])
  t.teardown(() => third.stop())
  const followed = await third.waitForStatus('a tunnel to the moved address', tunnelHeld, 30_000)
  t.equal(followed.node!.tunnel!.address, moved.tunnel)
  t.equal(followed.node!.tunnel!.discoveries, 1, 'the node asked the proxy where the tunnels go now, once')
  t.equal(`${remembered().host}:${remembered().port}`, moved.tunnel, 'the new address is remembered')
  t.match(await waitForNode(auth, 'mover'), /⟵ Tunnel/, 'the node is present through its tunnel')
})
