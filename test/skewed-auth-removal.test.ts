// `users rm` and `users reset` refuse the certificates issued before them whatever the clock
// of the auth server that issued them: two auth servers share etcd, B's clock 45 s ahead
// (libfaketime). A certificate B issued just before a removal or reset made through A is
// dated after A's instant of it; it is refused all the same, by the user generation it
// carries, which the removal or reset ended. The certificates issued after work, B's too.

import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, openssh, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'
import { clockOffBy } from './helpers/faketime.ts'
import { until } from './helpers/until.ts'

t.setTimeout(400_000)
const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  await main()
}

async function main(): Promise<void> {
  const AHEAD = clockOffBy('+45s')
  const NODE = 'pi-skewed-auth'
  const etcd = await EtcdServer.start()
  t.teardown(() => etcd.stop())
  const yaml = `  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${uniquePrefix('skewed-auth')}" }`
  const a = await new AuthProcess({ authServiceYaml: yaml }).start()
  t.teardown(() => a.stop())
  const b = await new AuthProcess({ authServiceYaml: yaml, env: AHEAD }).start()
  t.teardown(() => b.stop())
  const pin = await a.pin()
  const proxy = await new ProxyProcess({ auth: a, token: await a.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await a.token()}`, `--ca-pin=${pin}`, `--nodename=${NODE}`])
  t.teardown(() => node.stop())
  await waitForNode(a, NODE)
  const login = testLogin()

  /** `warrenctl auth sign` through auth server `server` (warrenctl at that server's clock): the profile's directory. */
  async function sign(server: AuthProcess, user: string): Promise<string> {
    const dir = tempDir('warren-user-')
    const args = ['auth', 'sign', `--user=${user}`, '--ttl=1h', `--out=${dir}`, '--format=openssh', `--proxy=${proxy.web}`, `--data-dir=${server.dataDir}`]
    const signed = await run(join(ROOT, 'cli/warrenctl.ts'), args, { env: server.env })
    t.equal(signed.code, 0, signed.stderr)
    return dir
  }

  /** Whether `profile`'s certificates run a command on the node through the proxy. */
  async function reaches(profile: string): Promise<boolean> {
    // The host key check is skipped: a refused user is refused the cluster's known_hosts, and the key is no secret.
    const r = await openssh(profile, ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', `${login}@${NODE}`, 'echo reached'])
    return r.code === 0 && r.stdout.trim() === 'reached'
  }

  for (const action of ['rm', 'reset'] as const) {
    t.test(`users ${action} through A refuses a certificate B issued just before`, async (t) => {
      const user = `skew-${action}`
      t.equal((await a.ctl(['users', 'add', user, `--logins=${login}`])).code, 0)
      const viaB = await sign(b, user)
      const viaA = await sign(a, user)
      t.ok(await reaches(viaB), "before: B's certificate reaches the node")
      const done = await a.ctl(['users', action, user])
      t.equal(done.code, 0, done.stderr)
      // A's certificate, dated before the removal by the same clock, shows that the proxy holds the lock.
      await until("the proxy to refuse A's certificate", async () => !(await reaches(viaA)), { timeoutMs: 60_000, everyMs: 500 })
      t.notOk(await reaches(viaB), "B's certificate, dated after A's instant of the removal, is refused too")
      if (action === 'rm') t.equal((await a.ctl(['users', 'add', user, `--logins=${login}`])).code, 0, 'the name is given to someone new')
      t.ok(await reaches(await sign(b, user)), 'a certificate B issues afterwards works')
      t.ok(await reaches(await sign(a, user)), 'and one from A')
    })
  }
}
