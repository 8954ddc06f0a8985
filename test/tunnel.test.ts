// A node that joins through a proxy's web port and serves SSH through its reverse tunnel,
// reached by a stock OpenSSH client and by `warren ssh` — with separate web and tunnel
// ports, and with both on one multiplexed port.

import t from 'tap'
import { AuthProcess, freePort, ProxyProcess, openssh, signUser, startNode, tempDir, waitForNode, warren } from './helpers/cluster.ts'

for (const layout of ['separate ports', 'one multiplexed port'] as const) {
  t.test(`ssh through the tunnel (${layout})`, async (t) => {
    const auth = await new AuthProcess().start()
    t.teardown(() => auth.stop())
    const pin = await auth.pin()
    const proxyToken = await auth.token(['tokens', 'add', '--type=proxy'])
    const single = layout === 'one multiplexed port'
    const SHARED = `127.0.0.1:${await freePort()}`
    const proxy = await new ProxyProcess({ auth, token: proxyToken, pin, ...(single ? { webListenAddr: SHARED, tunnelListenAddr: SHARED } : {}) }).start()
    t.teardown(() => proxy.stop())
    if (single) t.match(proxy.daemon.stderr, /Setup Proxy: Reverse tunnel proxy and web proxy listen on the same port, multiplexing is on/)
    else t.not(proxy.web, proxy.tunnel)

    const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=tunneled', '--labels=env=test'])
    t.teardown(() => node.stop())
    const listing = await waitForNode(auth, 'tunneled')
    t.match(listing, /^tunneled\s+\S+\s+⟵ Tunnel\s+env=test$/m, 'the node is present through its tunnel')

    const profile = await signUser(auth, proxy.web)
    const result = await openssh(profile, ['root@tunneled', 'echo "hello from $(hostname)"; echo oops >&2; exit 3'])
    t.equal(result.code, 3, 'the exit status comes back')
    t.match(result.stdout, /^hello from /)
    t.match(result.stderr, /oops/)

    const viaWarren = await warren(['ssh', `--identity=${profile}`, 'root@tunneled', 'echo', 'via-warren'])
    t.equal(viaWarren.code, 0, viaWarren.stderr)
    t.equal(viaWarren.stdout, 'via-warren\n')

    const unknown = await openssh(profile, ['root@nowhere', 'true'])
    t.not(unknown.code, 0)
    t.match(unknown.stderr, /cannot reach node "nowhere"/)
  })
}
