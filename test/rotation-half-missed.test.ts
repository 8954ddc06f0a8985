// A node that saw a host CA rotation begin but was off for the rest of it: it trusts the old
// and the new CA (it heard `init`), yet its certificate is from the old one, which `standby`
// dropped. Its servers verify, but they refuse its certificate: it must learn that the old
// CA is gone and recover its certificate by itself, as a node off through the whole rotation
// does (test/rotation-bridge.test.ts).

import t from 'tap'
import { caPin } from '../shared/pin.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, ProxyProcess, startNode, tempDir } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const tunnels = (status: WarrenStatus) => status.node?.tunnel?.proxies.length ?? 0

t.test('a node off from update_clients to standby comes back with a certificate of the new CA', { timeout: 150_000 }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pinA = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin: pinA, debug: false }).start()
  t.teardown(() => proxy.stop())
  const dir = tempDir()
  const args = [`--data-dir=${dir}`, `--auth-server=${proxy.web}`, '--nodename=half-missed']
  const first = startNode([...args, `--token=${await auth.token(['nodes', 'add', '--ttl=1h'])}`, `--ca-pin=${pinA}`])
  t.teardown(() => first.stop())
  const joined = await first.waitForStatus('a tunnel', (s) => tunnels(s) === 1)

  const phase = async (name: string) => {
    const result = await auth.ctl(['auth', 'rotate', '--type=host', '--manual', `--phase=${name}`])
    t.equal(result.code, 0, `${name}: ${result.stderr.trim()}`)
  }
  await phase('init')
  await first.waitForStatus('the node to trust both CAs', (s) => (s.node?.trusted_host_ca_pins.length ?? 0) === 2, 30_000)
  await first.stop()

  const hostCAs = async () => (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  const pinB = (await hostCAs()).map(caPin).find((pin) => pin !== pinA)!
  await phase('update_clients')
  // The proxy follows the rotation, as an operator stepping by hand waits for it to.
  await proxy.daemon.waitForStatus('the proxy to hold a certificate of the new CA', (s) => s.proxy?.certificate.issuer_pin === pinB, 30_000)
  await phase('update_servers')
  await phase('standby')
  await until('one host CA', async () => (await hostCAs()).length === 1)
  t.same((await hostCAs()).map(caPin), [pinB], 'the old CA dropped')

  const again = startNode(args)
  t.teardown(() => again.stop())
  const back = await again.waitForStatus('the node back, with a certificate of the new CA', (s) => tunnels(s) === 1 && s.node?.certificate.issuer_pin === pinB, 60_000)
  t.equal(back.node?.host_id, joined.node?.host_id, 'the same host')
  t.same(back.node?.trusted_host_ca_pins, [pinB], 'trusting only the new CA')
})
