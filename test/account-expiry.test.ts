// A login whose OS account has expired (`usermod --expiredate`, shadow(5)'s expiration date)
// is refused by the node as sshd refuses it, even to a user whose certificate and roles
// allow that login; clearing the date lets it in again. Real processes, stock OpenSSH and
// this test process's throwaway login.

import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { authAndProxy, JSON_LOGS, logEntries, openssh, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

const cannot = process.getuid?.() !== 0 ? 'needs root to expire a throwaway login' : spawnSync('usermod', ['--help']).status !== 0 ? 'usermod is not available' : undefined
if (cannot) {
  t.plan(0, cannot)
  process.exit(0)
}
t.setTimeout(120_000)

const login = testLogin()
const { auth, pin, proxy } = await authAndProxy(t)
const config = join(tempDir(), 'node.yaml')
writeFileSync(config, `ssh_service:\n  listen_addr: 127.0.0.1:0\n${JSON_LOGS}`)
const node = startNode([`--config=${config}`, `--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=device'])
t.teardown(() => node.stop())
await waitForNode(auth, 'device')
const profile = await signUser(auth, proxy.web)
const reach = () => openssh(profile, [`${login}@device`, 'echo reached'])

t.test('an expired account is refused, and let in again once its date is cleared', async (t) => {
  const before = await reach()
  t.equal(before.stdout, 'reached\n', `in date: ${before.stderr}`)

  execFileSync('usermod', ['--expiredate', '2001-02-03', login])
  t.teardown(() => void spawnSync('usermod', ['--expiredate', '', login]))
  const refused = await reach()
  t.not(refused.code, 0, 'refused')
  t.equal(refused.stdout, '', 'nothing ran')
  t.equal(logEntries(node.stderr, { login, account_expired: '2001-02-03' }).length > 0, true, 'the node says which account expired, and when')

  execFileSync('usermod', ['--expiredate', '', login])
  const after = await reach()
  t.equal(after.stdout, 'reached\n', `no expiry date: ${after.stderr}`)
})

t.test('an expiry date still ahead lets it in', async (t) => {
  const ahead = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10)
  execFileSync('usermod', ['--expiredate', ahead, login])
  t.teardown(() => void spawnSync('usermod', ['--expiredate', '', login]))
  const reached = await reach()
  t.equal(reached.stdout, 'reached\n', `expires ${ahead}: ${reached.stderr}`)
})
