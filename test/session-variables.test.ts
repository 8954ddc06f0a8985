// What a session on a node learns about its connection, as sshd tells it: SSH_CLIENT and
// SSH_CONNECTION with the user's address, SSH_TTY on a terminal; and who is behind it:
// WARREN_USER (the cluster user, where $USER is the OS login) and WARREN_SESSION_ID, the
// ID the auth server's audit trail lists the session under. Real processes, stock OpenSSH.

import t from 'tap'
import { authAndProxy, openssh, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)
const login = testLogin()
const { auth, pin, proxy } = await authAndProxy(t)
const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=device'])
t.teardown(() => node.stop())
await waitForNode(auth, 'device')
const profile = await signUser(auth, proxy.web, 'dora')

t.test('a command learns the connection and the user, under the ID the audit trail uses', async (t) => {
  const ran = await openssh(profile, [`${login}@device`, 'echo "$SSH_CLIENT|$SSH_CONNECTION|$WARREN_USER|$WARREN_SESSION_ID|$(printenv SSH_TTY || echo none)"'])
  t.equal(ran.code, 0, ran.stderr)
  const [client, connection, user, sessionId, tty] = ran.stdout.trim().split('|')
  t.equal(client, '127.0.0.1 0 0', "the user's address as the proxy saw it; ports the node does not see are 0")
  t.equal(connection, '127.0.0.1 0 0.0.0.0 0')
  t.equal(user, 'dora', 'the cluster user, not the login')
  t.equal(tty, 'none', 'no terminal, no SSH_TTY')
  let starts: { session_id?: string; user?: string }[] = []
  await until('the session in the audit trail', async () => {
    const listed = await auth.ctl(['audit', 'ls', '--type=session.start', '--user=dora', '--format=json'])
    starts = listed.code === 0 ? JSON.parse(listed.stdout) : []
    return starts.length > 0
  })
  t.same(
    starts.map((event) => event.session_id),
    [sessionId],
    'WARREN_SESSION_ID is the session the audit trail lists',
  )
})

t.test('a session on a terminal has SSH_TTY, its terminal', async (t) => {
  const ran = await openssh(profile, ['-tt', `${login}@device`, 'echo "$(tty)|$SSH_TTY"'])
  t.equal(ran.code, 0, ran.stderr)
  const [tty, told] = ran.stdout.trim().split('|')
  t.match(tty, /^\/dev\/pts\/\d+$/)
  t.equal(told, tty)
})
