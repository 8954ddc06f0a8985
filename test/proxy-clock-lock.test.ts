// A timed lock holds at a proxy whose wall clock runs ahead of the auth server's: the proxy
// counts down the time the auth server says a lock still lasts on its monotonic clock, and
// does not compare the lock's end on the auth server's clock with its own. A proxy 40
// minutes ahead (libfaketime) refuses a user locked for 30 minutes, over real OpenSSH.

import t from 'tap'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { clockOffBy } from './helpers/faketime.ts'
import { until } from './helpers/until.ts'

t.setTimeout(300_000)

const AHEAD = clockOffBy('+40m')
const NODE = 'pi-clock-ahead'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env: AHEAD }).start()
t.teardown(() => proxy.stop())
const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${NODE}`])
t.teardown(() => node.stop())
await waitForNode(auth, NODE)
await node.waitForStatus('a tunnel', (s) => (s.node?.tunnel?.proxies.length ?? 0) === 1, 60_000)
const login = testLogin()

/** Whether `profile`'s certificates run a command on the node through the proxy. */
async function reaches(profile: string): Promise<boolean> {
  // The host key check is skipped: a locked user is refused the cluster's known_hosts, and the key is no secret.
  const r = await openssh(profile, ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', `${login}@${NODE}`, 'echo reached'])
  return r.code === 0 && r.stdout.trim() === 'reached'
}

t.test('a user locked for 30 minutes is refused by a proxy 40 minutes ahead', async (t) => {
  const alice = await signUser(auth, proxy.web, 'alice')
  const carol = await signUser(auth, proxy.web, 'carol')
  t.ok(await reaches(alice), 'before the lock alice reaches the node')
  const timed = await auth.ctl(['lock', '--user=alice', '--ttl=30m', '--message=stolen laptop'])
  t.equal(timed.code, 0, timed.stderr)
  // A lock without an end, made after: once the proxy refuses carol it holds a list with alice's lock too.
  const sentinel = await auth.ctl(['lock', '--user=carol'])
  t.equal(sentinel.code, 0, sentinel.stderr)
  await until('the proxy to refuse carol', async () => !(await reaches(carol)), { timeoutMs: 60_000, everyMs: 500 })
  t.notOk(await reaches(alice), 'alice, locked for 30 minutes, is refused although the proxy reads the lock as ended long ago')
  t.equal((await auth.ctl(['auth', 'sign', '--user=alice', '--ttl=1h', `--out=${tempDir()}`, '--format=openssh'])).code === 0, false, 'the auth server holds the lock too')
})
