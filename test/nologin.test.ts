// While /run/nologin exists (systemd's shutdown and early boot, or an operator servicing a
// device) a node lets only root log in, as sshd does through pam_nologin. The node runs in a
// mount namespace whose /run is a directory of this test's, so that the file it sees is not
// the host's: other tests' nodes on this host go on as before.

import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { authAndProxy, Daemon, JSON_LOGS, logEntries, openssh, signUser, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { mountNamespaceUnavailable } from './helpers/mount-namespace.ts'
import { until } from './helpers/until.ts'

const cannot = mountNamespaceUnavailable()
if (cannot) {
  t.plan(0, cannot)
  process.exit(0)
}
t.setTimeout(120_000)

const login = testLogin()
const run = tempDir('warren-run-')
const nologin = join(run, 'nologin')
const { auth, pin, proxy } = await authAndProxy(t)
const config = join(tempDir(), 'node.yaml')
writeFileSync(config, `ssh_service:\n  listen_addr: 127.0.0.1:0\n${JSON_LOGS}`)
const node = new Daemon(
  ['start', '--roles=node', `--config=${config}`, `--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=device'],
  {},
  undefined,
  ['unshare', '--mount', '--propagation=private', 'sh', '-c', 'mount --bind "$1" /run && shift && exec "$@"', 'sh', run],
)
t.teardown(() => node.stop())
await waitForNode(auth, 'device')
const profile = await signUser(auth, proxy.web, 'alice', undefined, `${login},root`)
const reach = (as: string) => openssh(profile, [`${as}@device`, 'echo reached'])

t.test('while /run/nologin exists only root logs in', async (t) => {
  t.equal((await reach(login)).stdout, 'reached\n', 'before it')
  writeFileSync(nologin, 'Back after the firmware update.\n')
  const refused = await reach(login)
  t.not(refused.code, 0, 'a login other than root is refused')
  t.equal(refused.stdout, '', 'nothing ran')
  await until('the node to say why', () => logEntries(node.stderr, { login, nologin: '/run/nologin' }).length > 0)
  const root = await reach('root')
  t.equal(root.stdout, 'reached\n', `root is not: ${root.stderr}`)
  rmSync(nologin)
  const after = await reach(login)
  t.equal(after.stdout, 'reached\n', `once it is gone, the login is let in again: ${after.stderr}`)
})
