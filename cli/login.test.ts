import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { UserCerts } from '../shared/protocol/admin.ts'
import { loggedInText, loginStatusText } from './login.ts'

t.test("the roles and logins of a login's answer are printed escaped", async (t) => {
  // The answer comes through a proxy, which could put in what a terminal acts on.
  const signed = {
    cluster_name: 'home',
    roles: ['access', 'ed\x1b]52;c;ZXZpbA==\x07itor'],
    logins: ['pi\x1b[2J', 'root\r\nLogged in as admin'],
    valid_before: Date.UTC(2030, 0, 2, 3, 4),
  } as UserCerts
  t.equal(
    loggedInText('alice', signed, '/home/alice/.warren/home'),
    [
      'Logged in as alice to cluster home (roles access,ed\\x1b]52;c;ZXZpbA==\\x07itor, logins pi\\x1b[2J,root\\x0d\\x0aLogged in as admin) until 02 Jan 30 03:04 UTC',
      'Connect with: ssh -F /home/alice/.warren/home/ssh_config pi\\x1b[2J@NODE',
    ].join('\n'),
  )
})

t.test('plain names are printed as they are', async (t) => {
  const signed = { cluster_name: 'home', roles: ['access'], logins: ['pi', 'ubuntu'], valid_before: Date.UTC(2030, 0, 2, 3, 4) } as UserCerts
  t.equal(
    loggedInText('alice', signed, '/home/alice/.warren/home'),
    'Logged in as alice to cluster home (roles access, logins pi,ubuntu) until 02 Jan 30 03:04 UTC\nConnect with: ssh -F /home/alice/.warren/home/ssh_config pi@NODE',
  )
})

t.test('warren status prints the stored roles and logins escaped too', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'warren-status-'))
  t.teardown(() => rmSync(home, { recursive: true, force: true }))
  chmodSync(home, 0o700)
  const dir = join(home, 'home')
  mkdirSync(dir, { mode: 0o700 })
  const profile = { cluster_name: 'home', user: 'alice', roles: ['ed\x1b]52;c;ZXZpbA==\x07itor'], logins: ['pi\x1b[2J'], proxies: [], valid_before: Date.UTC(2030, 0, 2, 3, 4) }
  writeFileSync(join(dir, 'profile.json'), JSON.stringify(profile), { mode: 0o600 })
  const saved = process.env.WARREN_HOME
  process.env.WARREN_HOME = home
  t.teardown(() => {
    if (saved === undefined) delete process.env.WARREN_HOME
    else process.env.WARREN_HOME = saved
  })
  const text = loginStatusText(Date.UTC(2030, 0, 1))
  t.match(text, 'Roles:    ed\\x1b]52;c;ZXZpbA==\\x07itor')
  t.match(text, 'Logins:   pi\\x1b[2J')
  t.notMatch(text, '\x1b', 'no escape character reaches the terminal')
})
