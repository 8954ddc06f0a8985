// A slowloris on the plain SSH stream (`warren ssh --fdpass`): hundreds of connections from
// several loopback addresses send the start of the stream's first line (`WARREN-SSH`) and then
// nothing, at the proxy's web port. Such a connection is read like a TLS one until its first
// line is whole, so it holds no handshake slot and is closed at the hello deadline: users'
// fresh handshakes (TLS and plain stream alike) still get a slot, and the proxy's gate counts
// the attackers as waiting, never as handshaking. The counts are read from the proxy's status.

import t from 'tap'
import { SSH_STREAM_MAGIC } from '../shared/protocol/ssh-stream.ts'
import { AuthProcess, ProxyProcess, signUser, startNode, tempDir, testLogin, warren } from './helpers/cluster.ts'
import { ATTACKERS, Slowloris } from './helpers/slowloris.ts'
import { until } from './helpers/until.ts'

/** Enough of the stream's first line for the proxy to know the protocol, not all of it. */
const PARTIAL_LINE = Buffer.from(SSH_STREAM_MAGIC.slice(0, 10), 'latin1')

t.test('a slowloris of plain SSH streams holds no handshake slot and keeps no user out', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--ca-pin=${pin}`, '--nodename=pi-1', `--token=${await auth.token()}`])
  t.teardown(() => node.stop())
  await node.waitForStatus("the node's tunnel", (status) => (status.node?.tunnel?.proxies.length ?? 0) === 1, 30_000)
  const profile = await signUser(auth, proxy.web)
  /** A fresh process each time: a new handshake, with no session to resume. */
  const ssh = (fdpass: boolean) => warren(['ssh', ...(fdpass ? ['--fdpass'] : []), `--identity=${profile}`, `${testLogin()}@pi-1`, 'echo', 'reached'], { timeoutMs: 30_000 })
  for (const fdpass of [false, true]) t.equal((await ssh(fdpass)).stdout, 'reached\n', `the user reaches the node before the attack (control, fdpass ${fdpass})`)

  // 900 connections at once (more per address than the proxy keeps waiting, and far more than
  // its handshake slots), then 40 new ones a second.
  const attack = new Slowloris([proxy.web], ATTACKERS, 3000, PARTIAL_LINE)
  t.teardown(() => attack.destroy())
  attack.burst(900)
  attack.start(40)
  await until('the attack to be connected', async () => attack.counts.connected >= 900, { timeoutMs: 20_000 })

  // The attackers wait as connections without their first line (40 a second, each for the
  // 2 s hello deadline, after the burst), not in handshakes.
  const during = (await proxy.daemon.waitForStatus('the attack to be counted', (status) => status.proxy!.handshake_gate.pending_hello >= 20, 10_000)).proxy!.handshake_gate
  t.equal(during.handshaking, 0, `no attacking connection holds a handshake slot (${JSON.stringify(during)})`)
  t.equal(during.handshake_queued, 0, 'nor waits for one')

  for (let i = 0; i < 3; i++) {
    for (const fdpass of [false, true]) {
      const result = await ssh(fdpass)
      t.equal(result.code, 0, `the user's warren ssh${fdpass ? ' --fdpass' : ''} succeeds during the attack (${result.stderr.trim()})`)
      t.equal(result.stdout, 'reached\n')
    }
  }

  attack.stop()
  t.ok(await attack.allClosed(15_000), `every attacking connection was closed by the proxy (${JSON.stringify(attack.counts)})`)
  t.equal(attack.counts.failed, 0, 'every attacking connection had connected')
  const after = (await proxy.daemon.waitForStatus("the proxy's counts to settle", (status) => status.proxy!.handshake_gate.pending_hello === 0, 10_000)).proxy!.handshake_gate
  t.ok(after.late_hello_closed > 0, `the proxy closed connections whose first line was late (${after.late_hello_closed})`)
  t.ok(after.hello_per_address_closed > 0, `and, per source address, the oldest of too many waiting (${after.hello_per_address_closed})`)
})
