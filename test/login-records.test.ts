// A session with a terminal through a node is in the system's login records, as an sshd
// session is: `who` lists it while it runs, `last` shows it with its end, `lastlog` shows the
// login's last one; a command without a terminal leaves none. The node runs in a mount
// namespace whose /run and /var/log are directories of this test's, so that the records it
// writes are not the host's; util-linux's and shadow's own readers read them back.

import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, realpathSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { authAndProxy, Daemon, openssh, signUser, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { mountNamespaceUnavailable } from './helpers/mount-namespace.ts'
import { until } from './helpers/until.ts'

const cannot =
  mountNamespaceUnavailable() ??
  (!['x64', 'arm64'].includes(process.arch)
    ? 'login records are kept on x86-64 and arm64 only'
    : !['who', 'last', 'lastlog'].every((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0)
      ? "needs util-linux's who and last, and shadow's lastlog"
      : realpathSync('/var/run') !== '/run'
        ? '/var/run is not /run: binding /run would not hide the host’s utmp'
        : undefined)
if (cannot) {
  t.plan(0, cannot)
  process.exit(0)
}
t.setTimeout(120_000)

const login = testLogin()
const run = tempDir('warren-run-')
const logs = tempDir('warren-var-log-')
const utmp = join(run, 'utmp')
const wtmp = join(logs, 'wtmp')
for (const file of [utmp, wtmp, join(logs, 'lastlog')]) writeFileSync(file, '')
const { auth, pin, proxy } = await authAndProxy(t)
const config = join(tempDir(), 'node.yaml')
writeFileSync(config, 'ssh_service:\n  listen_addr: 127.0.0.1:0\n')
const node = new Daemon(
  ['start', '--roles=node', `--config=${config}`, `--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=device'],
  {},
  undefined,
  ['unshare', '--mount', '--propagation=private', 'sh', '-c', 'mount --bind "$1" /run && mount --bind "$2" /var/log && shift 2 && exec "$@"', 'sh', run, logs],
)
t.teardown(() => node.stop())
await waitForNode(auth, 'device')
const profile = await signUser(auth, proxy.web, 'alice', undefined, login)

const who = () => execFileSync('who', [utmp], { encoding: 'utf8' })
const last = () => execFileSync('last', ['-f', wtmp, '-i', '-w'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } })

t.test('a session with a terminal: in utmp while it runs, in wtmp with its end, in lastlog', async (t) => {
  const ssh = spawn('ssh', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', '-tt', `${login}@device`, 'tty; cat /proc/self/loginuid; echo; read line'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  t.teardown(() => ssh.kill())
  let output = ''
  ssh.stdout.on('data', (chunk) => (output += chunk))
  const exited = new Promise<number | null>((resolve) => ssh.once('close', resolve))
  await until('the session to print its terminal', () => /\/dev\/pts\/\d+/.test(output))
  const tty = /\/dev\/(pts\/\d+)/.exec(output)![1]!

  t.match(who(), new RegExp(`^${login}\\s+${tty}\\s+\\S+ \\S+ \\(127\\.0\\.0\\.1\\)\\n$`), 'who lists the login on its terminal, from the client address')
  const uid = Number(execFileSync('id', ['-u', login], { encoding: 'utf8' }))
  if (existsSync('/proc/self/loginuid')) {
    await until('the session to print its audit login UID', () => /\/dev\/pts\/\d+\s+\d+\s/.test(output))
    t.equal(Number(/\/dev\/pts\/\d+\s+(\d+)\s/.exec(output)![1]), uid, "the session's audit login UID is the login's, as pam_loginuid makes sshd's")
    t.match(last(), new RegExp(`^${login}\\s+${tty}\\s+127\\.0\\.0\\.1\\s.*still logged in`, 'm'), "last shows it running: its process is the login's")
  }

  ssh.stdin.end('done\n')
  t.equal(await exited, 0, 'the session ends')
  await until('the node to record its end', () => who() === '')
  // last calls a session that ended within the current second "still running": asked again until it is past.
  const ended = new RegExp(`^${login}\\s+${tty}\\s+127\\.0\\.0\\.1\\s+.* - \\d\\d:\\d\\d\\s+\\(\\d\\d:\\d\\d\\)`, 'm')
  await until('last to show when it ended', () => ended.test(last()))
  const lastlog = spawnSync('unshare', ['--mount', 'sh', '-c', 'mount --bind "$1" /var/log && lastlog -u "$2"', 'sh', logs, login], { encoding: 'utf8' })
  t.equal(lastlog.status, 0, lastlog.stderr)
  t.match(lastlog.stdout, new RegExp(`^${login}\\s+${tty}\\s+127\\.0\\.0\\.1\\s`, 'm'), "lastlog shows the login's last session")
})

t.test('a command without a terminal leaves no record', async (t) => {
  const before = statSync(wtmp).size
  const ran = await openssh(profile, [`${login}@device`, 'echo ran'])
  t.equal(ran.stdout, 'ran\n', ran.stderr)
  t.equal(statSync(wtmp).size, before, 'wtmp unchanged')
  t.equal(who(), '', 'utmp lists no one')
})
