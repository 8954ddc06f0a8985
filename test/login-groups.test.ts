// A session on a node runs with its login's supplementary groups, as sshd's initgroups gives
// them: a device's `dialout` or `gpio` membership, or a file shared by group, is the login's
// through Warren too. Real processes and stock OpenSSH: a throwaway login in a throwaway
// group, a file only that group may read, and a command, a terminal session and an scp of
// that file through the proxy and a tunnel.

import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { findPerl } from '../agent/pty.ts'
import { authAndProxy, openssh, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

const cannot =
  process.getuid?.() !== 0
    ? 'needs root to create a throwaway login and group'
    : spawnSync('groupadd', ['--help']).status !== 0
      ? 'groupadd is not available'
      : !findPerl()
        ? 'needs perl, which sets the groups'
        : undefined
if (cannot) {
  t.plan(0, cannot)
  process.exit(0)
}
t.setTimeout(120_000)

const login = testLogin()
const group = `wg${process.pid}`
// A group by this name belongs to an earlier process with this PID, killed before its teardown.
spawnSync('groupdel', [group])
execFileSync('groupadd', [group])
t.teardown(() => void spawnSync('groupdel', [group]))
execFileSync('usermod', ['--append', '--groups', group, login])
const gid = Number(execFileSync('getent', ['group', group], { encoding: 'utf8' }).split(':')[2])
const expectedGroups = execFileSync('id', ['-G', login], { encoding: 'utf8' }).trim().split(' ').map(Number).sort()

// A file only the group may read, in a directory anyone may enter.
const dir = mkdtempSync('/tmp/warren-groups-')
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
chmodSync(dir, 0o755)
const shared = join(dir, 'shared')
writeFileSync(shared, 'for the group\n')
chownSync(shared, 0, gid)
chmodSync(shared, 0o640)

const { auth, pin, proxy } = await authAndProxy(t)
const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=device'])
t.teardown(() => node.stop())
await waitForNode(auth, 'device')
const profile = await signUser(auth, proxy.web)

const groupsOf = (output: string) => output.trim().split(/\s+/).map(Number).sort()

t.test('a command runs with the login’s groups, and reads what its group may', async (t) => {
  t.ok(expectedGroups.includes(gid), `the login is in ${group} here (${expectedGroups.join(' ')})`)
  const ids = await openssh(profile, [`${login}@device`, 'id -G'])
  t.same(groupsOf(ids.stdout), expectedGroups, `id -G through Warren (${ids.stderr.trim()})`)
  const read = await openssh(profile, [`${login}@device`, `cat ${shared}`])
  t.equal(read.stdout, 'for the group\n', `the group's file (${read.stderr.trim()})`)
  const uid = await openssh(profile, [`${login}@device`, 'id -u; id -g'])
  t.equal(
    uid.stdout,
    `${execFileSync('id', ['-u', login], { encoding: 'utf8' }).trim()}\n${execFileSync('id', ['-g', login], { encoding: 'utf8' }).trim()}\n`,
    'as the login, with its primary group',
  )
})

t.test('a terminal session too', async (t) => {
  const ids = await openssh(profile, ['-tt', `${login}@device`, 'id -G'])
  t.same(groupsOf(ids.stdout), expectedGroups, `id -G on a terminal (${ids.stderr.trim()})`)
})

t.test('scp copies a file the login may read only through its group', async (t) => {
  const copy = join(tempDir(), 'copy')
  const copied = spawnSync('scp', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@device:${shared}`, copy], { encoding: 'utf8', timeout: 30_000 })
  t.equal(copied.status, 0, copied.stderr)
  t.equal(readFileSync(copy, 'utf8'), 'for the group\n')
})
