// How a login is found when /etc/passwd does not hold it: NSS through getent, and what
// happens when getent is missing, fails or hangs (a directory server that does not answer).
// The real NSS path, through a real module, is test/nss-logins.test.ts.

import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../test/helpers/cluster.ts'
import { accountExpired, findLogin, lookupPasswd } from './login-accounts.ts'

/** An executable script standing in for getent, recording each argv it was run with. */
function getentScript(body: string): { path: string; calls: string } {
  const dir = tempDir()
  const path = join(dir, 'getent')
  const calls = join(dir, 'calls')
  writeFileSync(path, `#!/bin/sh\necho "$*" >> ${calls}\n${body}\n`)
  chmodSync(path, 0o755)
  return { path, calls }
}

t.test('an /etc/passwd login is found without getent', async (t) => {
  const root = await findLogin('root', { getent: '/nonexistent/getent' })
  t.match(root, { name: 'root', uid: 0, gid: 0 })
  t.equal(root?.groups, undefined, 'its groups are /etc/group’s, read when a session starts')
  t.same(root, lookupPasswd('root'))
})

t.test('a login only NSS knows comes with its supplementary groups, the primary one left out', async (t) => {
  const getent = getentScript(`case "$1" in
  passwd) echo 'ldapuser:*:5001:5001:Directory user:/home/ldapuser:/bin/bash' ;;
  initgroups) echo 'ldapuser              5001 5003 5002 5003' ;;
esac`)
  const account = await findLogin('ldapuser', { getent: getent.path })
  t.same(account, { name: 'ldapuser', uid: 5001, gid: 5001, home: '/home/ldapuser', shell: '/bin/bash', groups: [5002, 5003] })
})

t.test('a login no source knows, or getent missing, is no login', async (t) => {
  const none = getentScript('exit 2')
  t.equal(await findLogin('nobody-here', { getent: none.path }), undefined)
  t.equal(await findLogin('nobody-here', { getent: '/nonexistent/getent' }), undefined)
})

t.test('an answer under another name is the account by that name, as getpwnam gives it; not one account is no login', async (t) => {
  // SSSD with default_domain_suffix, say: alice is alice@corp.
  const suffixed = getentScript(`case "$1" in
  passwd) echo 'alice@corp:*:5001:5001::/home/alice:/bin/sh' ;;
  initgroups) echo 'alice@corp 5007' ;;
  shadow) echo 'alice@corp:*:19000:0:99999:7::30000:' ;;
esac`)
  const alice = await findLogin('alice', { getent: suffixed.path })
  t.match(alice, { name: 'alice@corp', uid: 5001, groups: [5007], expiresOnDay: 30_000 })
  t.same(
    readFileSync(suffixed.calls, 'utf8').split('\n').sort().filter(Boolean),
    ['initgroups -- alice@corp', 'passwd -- alice', 'shadow -- alice@corp'],
    'groups and shadow by the name NSS gave',
  )
  const two = getentScript(`echo 'ldapuser:x:5001:5001::/home/a:/bin/sh'; echo 'ldapuser:x:5002:5002::/home/b:/bin/sh'`)
  t.equal(await findLogin('ldapuser', { getent: two.path }), undefined)
  const bad = getentScript(`echo 'ldapuser:x:abc:5001::/home/a:/bin/sh'`)
  t.equal(await findLogin('ldapuser', { getent: bad.path }), undefined)
  const nameless = getentScript(`echo ':x:5001:5001::/home/a:/bin/sh'`)
  t.equal(await findLogin('ldapuser', { getent: nameless.path }), undefined)
})

t.test('a name that could be misread in getent’s output, or as a uid, is not looked up', async (t) => {
  const getent = getentScript(`echo 'x:x:1:1::/:/bin/sh'`)
  for (const login of ['a:b', 'a\nb', '', '1000']) t.equal(await findLogin(login, { getent: getent.path }), undefined, JSON.stringify(login))
  t.notOk(existsSync(getent.calls), 'getent never ran')
})

t.test('a lookup that hangs ends at the deadline, said to the caller', async (t) => {
  const getent = getentScript('sleep 30')
  const errors: Error[] = []
  t.equal(await findLogin('ldapuser', { getent: getent.path, timeoutMs: 300, onLookupError: (error) => errors.push(error) }), undefined)
  t.equal(errors.length, 1)
  t.match(errors[0]?.message, /took longer than/)
})

t.test('one deadline for all the lookups: groups that hang after a passwd answer end it, and refuse', async (t) => {
  const getent = getentScript(`case "$1" in
  passwd) echo 'ldapuser:*:5001:5001::/home/ldapuser:/bin/sh' ;;
  *) sleep 30 ;;
esac`)
  const errors: Error[] = []
  t.equal(await findLogin('ldapuser', { getent: getent.path, timeoutMs: 500, onLookupError: (error) => errors.push(error) }), undefined)
  t.match(errors[0]?.message, /took longer than/)
})

t.test('groups that cannot be looked up refuse the login, as sshd fails on initgroups', async (t) => {
  const getent = getentScript(`case "$1" in
  passwd) echo 'ldapuser:*:5001:5001::/home/ldapuser:/bin/sh' ;;
  initgroups) echo 'no directory' >&2; exit 1 ;;
esac`)
  const errors: Error[] = []
  t.equal(await findLogin('ldapuser', { getent: getent.path, onLookupError: (error) => errors.push(error) }), undefined)
  t.match(errors[0]?.message, /getent initgroups failed: no directory/)
})

t.test('an account NSS gives carries its shadow expiration day, judged as sshd judges it', async (t) => {
  const getent = getentScript(`case "$1" in
  passwd) echo 'ldapuser:*:5001:5001::/home/ldapuser:/bin/sh' ;;
  initgroups) echo 'ldapuser' ;;
  shadow) echo 'ldapuser:*:19000:0:99999:7::20000:' ;;
esac`)
  const account = await findLogin('ldapuser', { getent: getent.path })
  t.equal(account?.expiresOnDay, 20_000)
  const day = 86_400_000
  t.notOk(accountExpired(account!, 19_999 * day + day - 1), 'the day before')
  t.ok(accountExpired(account!, 20_000 * day), 'from the day on')
})

t.test('a source without shadow entries leaves the account without a date; one that fails refuses it', async (t) => {
  const none = getentScript(`case "$1" in
  passwd) echo 'ldapuser:*:5001:5001::/home/ldapuser:/bin/sh' ;;
  shadow) exit 2 ;;
esac`)
  const account = await findLogin('ldapuser', { getent: none.path })
  t.equal(account?.expiresOnDay, undefined)
  t.notOk(accountExpired(account!, Date.now()))
  const failing = getentScript(`case "$1" in
  passwd) echo 'ldapuser:*:5001:5001::/home/ldapuser:/bin/sh' ;;
  shadow) sleep 30 ;;
esac`)
  const errors: Error[] = []
  t.equal(await findLogin('ldapuser', { getent: failing.path, timeoutMs: 300, onLookupError: (error) => errors.push(error) }), undefined)
  t.equal(errors.length, 1)
})
