// A login that /etc/passwd does not hold but another account source does (LDAP, SSSD, here
// libnss-extrausers: a real NSS module reading its own files) logs in as sshd would let it:
// with the uid, gid, home and supplementary groups NSS gives. The node runs in a mount
// namespace of its own whose /etc/nsswitch.conf lists extrausers, so the account exists
// for that node alone; a node outside it, on the same host, refuses the same login.

import { spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { findPerl } from '../agent/pty.ts'
import { authAndProxy, Daemon, JSON_LOGS, logEntries, openssh, signUser, tempDir, waitForNode } from './helpers/cluster.ts'
import { mountNamespaceUnavailable } from './helpers/mount-namespace.ts'

const EXTRAUSERS_MODULE = ['/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2', '/usr/lib/libnss_extrausers.so.2', '/usr/lib/aarch64-linux-gnu/libnss_extrausers.so.2']

const cannot =
  mountNamespaceUnavailable() ?? (!EXTRAUSERS_MODULE.some((path) => existsSync(path)) ? 'needs libnss-extrausers' : !findPerl() ? 'needs perl, which sets the groups' : undefined)
if (cannot) {
  t.plan(0, cannot)
  process.exit(0)
}
t.setTimeout(120_000)

/** The first ID from `from` that no account (or group) on this host has. */
function unusedId(database: 'passwd' | 'group', from: number): number {
  let id = from
  while (spawnSync('getent', [database, String(id)]).status === 0) id++
  return id
}

const login = `nss${process.pid}`
/** An account of the same source whose shadow entry says it expired on 1970-01-02. */
const expiredLogin = `nssx${process.pid}`
const uid = unusedId('passwd', 42_000 + (process.pid % 1000) * 10)
const gid = unusedId('group', uid)
const extraGid = unusedId('group', gid + 1)
const home = tempDir('warren-nss-home-')
chownSync(home, uid, gid)

// The extrausers files and an nsswitch.conf that lists them, mounted over the real ones in the node's namespace.
const files = tempDir('warren-nss-')
writeFileSync(join(files, 'passwd'), `${login}:x:${uid}:${gid}:NSS login:${home}:/bin/sh\n${expiredLogin}:x:${uid}:${gid}:Expired:${home}:/bin/sh\n`)
writeFileSync(join(files, 'group'), `${login}:x:${gid}:\n${login}-extra:x:${extraGid}:${login}\n`)
writeFileSync(join(files, 'shadow'), `${login}:*:20000:0:99999:7:::\n${expiredLogin}:*:20000:0:99999:7::1:\n`)
const nsswitch = join(tempDir(), 'nsswitch.conf')
writeFileSync(nsswitch, 'passwd: files extrausers\ngroup: files extrausers\nshadow: files extrausers\nhosts: files dns\n')
mkdirSync('/var/lib/extrausers', { recursive: true })
const inNamespace = [
  'unshare',
  '--mount',
  '--propagation=private',
  'sh',
  '-c',
  'mount --bind "$1" /etc/nsswitch.conf && mount --bind "$2" /var/lib/extrausers && shift 2 && exec "$@"',
  'sh',
  nsswitch,
  files,
]

const { auth, pin, proxy } = await authAndProxy(t)
const nodeConfig = join(tempDir(), 'node.yaml')
writeFileSync(nodeConfig, `ssh_service:\n  listen_addr: 127.0.0.1:0\n${JSON_LOGS}`)
/** A node joined through the proxy, started under `launcher`. */
const startNode = async (nodename: string, launcher: string[] = []) => {
  const token = await auth.token()
  const node = new Daemon(
    ['start', '--roles=node', `--config=${nodeConfig}`, `--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${token}`, `--ca-pin=${pin}`, `--nodename=${nodename}`],
    {},
    undefined,
    launcher,
  )
  t.teardown(() => node.stop())
  return node
}
const nssNode = await startNode('nss-node', inNamespace)
await startNode('plain-node')
await waitForNode(auth, 'nss-node')
await waitForNode(auth, 'plain-node')
const profile = await signUser(auth, proxy.web, 'alice', undefined, `${login},${expiredLogin}`)

t.test('the login NSS gives runs with its uid, gid and groups', async (t) => {
  const ids = await openssh(profile, [`${login}@nss-node`, 'id -u; id -g; id -G; pwd'])
  t.equal(ids.code, 0, ids.stderr)
  const [u, g, groups, cwd] = ids.stdout.trim().split('\n')
  t.equal(Number(u), uid, 'its uid')
  t.equal(Number(g), gid, 'its primary group')
  t.same(groups?.split(' ').map(Number).sort(), [gid, extraGid].sort(), 'and the group extrausers lists it in')
  t.equal(cwd, home, 'in its home')
})

t.test('a file it writes is its own', async (t) => {
  const written = await openssh(profile, [`${login}@nss-node`, 'echo mine > "$HOME/file"'])
  t.equal(written.code, 0, written.stderr)
  const stat = statSync(join(home, 'file'))
  t.same([stat.uid, stat.gid], [uid, gid])
})

t.test('a node whose account sources do not hold it refuses it', async (t) => {
  const refused = await openssh(profile, [`${login}@plain-node`, 'id -u'])
  t.not(refused.code, 0, 'refused')
  t.equal(refused.stdout, '', 'nothing ran')
})

t.test('an account whose source says it expired is refused', async (t) => {
  const refused = await openssh(profile, [`${expiredLogin}@nss-node`, 'id -u'])
  t.not(refused.code, 0, 'refused')
  t.equal(refused.stdout, '', 'nothing ran')
  t.ok(logEntries(nssNode.stderr, { login: expiredLogin, account_expired: '1970-01-02' }).length > 0, 'for its expiry')
})
