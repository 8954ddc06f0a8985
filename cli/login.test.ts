import t from 'tap'
import type { UserCerts } from '../shared/protocol/admin.ts'
import { loggedInText } from './login.ts'

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
