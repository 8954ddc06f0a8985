// Nodes off through a whole host CA rotation AND for longer than their certificates live
// come back by themselves: the bridge (test/rotation-bridge.test.ts) gives them the new CA,
// and recovery (test/recovery.test.ts) a certificate from it, within the recovery window.
// A node in tunnel mode, which remembers where its tunnels go and so never asks a server
// anything at start, and one in direct mode. A proxy in that state is
// test/rotation-proxy-missed.test.ts's.

import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { issuedByAny, validNow } from '../shared/cert-subject.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { caPin } from '../shared/pin.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, ProxyProcess, startNode, tempDir } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const tunnels = (status: WarrenStatus) => status.node?.tunnel?.proxies.length ?? 0
const beats = (status: WarrenStatus) => status.node?.direct?.heartbeats.ok ?? 0

t.test('nodes whose certificates expired while they missed a host CA rotation come back by bridge and recovery', { timeout: 150_000 }, async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s' }).start()
  t.teardown(() => auth.stop())
  const pinA = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin: pinA, debug: false }).start()
  t.teardown(() => proxy.stop())
  const dirs = { tunnel: tempDir(), direct: tempDir() }
  const servers = { tunnel: proxy.web, direct: auth.address }
  const start = async (which: 'tunnel' | 'direct', join: boolean) => {
    const token = join ? [`--token=${await auth.token(['nodes', 'add', '--ttl=1h'])}`, `--ca-pin=${pinA}`] : []
    const node = startNode([`--data-dir=${dirs[which]}`, `--auth-server=${servers[which]}`, `--nodename=expired-${which}`, ...token])
    t.teardown(() => node.stop())
    return node
  }
  const first = { tunnel: await start('tunnel', true), direct: await start('direct', true) }
  const joined = {
    tunnel: await first.tunnel.waitForStatus('the tunnel node to hold a tunnel', (s) => tunnels(s) === 1),
    direct: await first.direct.waitForStatus('the direct node to heartbeat', (s) => beats(s) >= 1),
  }
  await first.tunnel.stop()
  await first.direct.stop()

  const hostCAs = async () => (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  const result = await auth.ctl(['auth', 'rotate', '--type=host', '--grace-period=12s'])
  t.equal(result.code, 0, `rotation started: ${result.stdout.trim()}${result.stderr.trim()}`)
  await until('the rotation to reach standby', async () => (await hostCAs()).length === 1 && caPin((await hostCAs())[0]!) !== pinA, { timeoutMs: 40_000 })
  const caB = (await hostCAs())[0]!
  const pinB = caPin(caB)
  await proxy.daemon.waitForStatus('the proxy to hold a certificate from the new CA', (s) => s.proxy?.certificate.issuer_pin === pinB, 30_000)
  for (const dir of Object.values(dirs)) {
    const stored = loadIdentity(dir)!
    await until('the certificate of the stopped node to expire', () => Date.now() > new X509Certificate(stored.tlsCertPem).validToDate.getTime() + 1000, { timeoutMs: 30_000 })
    t.same(stored.hostCAPems.map(caPin), [pinA], 'the stopped node trusts the old CA alone')
  }

  // Their data dirs alone: no token, no pin.
  const again = { tunnel: await start('tunnel', false), direct: await start('direct', false) }
  const back = (s: WarrenStatus) => s.node?.certificate.issuer_pin === pinB && s.node.trusted_host_ca_pins.join() === pinB
  const directBack = await again.direct.waitForStatus('the direct node to come back', (s) => back(s) && beats(s) >= 1, 60_000)
  t.equal(directBack.node!.host_id, joined.direct.node!.host_id, 'the direct node is the same host')
  const tunnelBack = await again.tunnel.waitForStatus('the tunnel node to come back', (s) => back(s) && tunnels(s) === 1, 60_000)
  t.equal(tunnelBack.node!.host_id, joined.tunnel.node!.host_id, 'the tunnel node is the same host')
  for (const dir of Object.values(dirs)) {
    const stored = loadIdentity(dir)!
    t.same(stored.hostCAPems, [caB], 'the stored trust is the new CA alone')
    const cert = new X509Certificate(stored.tlsCertPem)
    t.ok(validNow(cert) && issuedByAny(cert, [caB]), 'the stored certificate is valid and from the new CA')
  }
})
