// What people type to log in reaches the auth server sealed: whoever holds a proxy's keys
// and stands where the proxy stands reads none of it. A relay with a proxy's stolen keys
// ends the TLS of `warren login` (which accepts it: a proxy certificate of the cluster's CA),
// records every byte both ways in the clear and passes them on to the real proxy. A person
// accepts an invitation and logs in through it; the record holds neither the sign-up token,
// nor the password, nor the second factor's secret or codes. Nor can such a relay have the
// person's login certify keys of its own, proven over the same challenge: the sealed box is
// bound to the keys it was sent with. A join token passes the same way, sealed and bound to
// the join's name, roles and keys.

import t from 'tap'
import { generateUserKeys, provenKeyFields } from '../cli/credentials-files.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { joinCluster } from '../shared/join.ts'
import { authAndProxy, tempDir, testLogin, warren } from './helpers/cluster.ts'
import { codeAt, signUp } from './helpers/people.ts'
import { recordingRelay, rewritingRelay } from './helpers/stolen-proxy-relays.ts'

t.setTimeout(120_000)

const PASSWORD = 'a long enough passphrase'
const { auth, pin, proxy } = await authAndProxy(t)
const stolen = loadIdentity(proxy.dataDir, 'proxy')!

const { address: relayAddress, recorded } = await recordingRelay(t, stolen, proxy.web)

t.test('a sign-up and a login through a relay with a proxy’s keys: it reads none of what the person typed', async (t) => {
  const added = await auth.ctl(['users', 'add', 'dora', `--logins=${testLogin()}`])
  t.equal(added.code, 0, added.stderr)
  const token = /--invite=([0-9a-f]{32})/.exec(added.stdout)![1]
  const env = { WARREN_HOME: tempDir('warren-home-') }

  const signed = await signUp([`--proxy=${relayAddress}`, `--invite=${token}`, `--ca-pin=${pin}`], env, PASSWORD)
  t.equal(signed.code, 0, signed.stderr)
  t.match(signed.stdout, /^Logged in as dora to cluster test-cluster/)
  const code = codeAt(signed.secret!, signed.step! + 1)
  const login = await warren(['login', `--proxy=${relayAddress}`, '--user=dora'], { env, input: `${PASSWORD}\n${code}\n` })
  t.equal(login.code, 0, login.stderr)
  t.match(login.stdout, /^Logged in as dora to cluster test-cluster/)

  const seen = Buffer.concat(recorded).toString('latin1')
  t.match(seen, /POST \/v1\/login HTTP/, 'the relay did record the requests in the clear')
  t.match(seen, /POST \/v1\/signup\/complete HTTP/)
  // Codes are six digits, which random text may hold: they are looked for as JSON strings.
  for (const [what, secret] of [
    ['the sign-up token', token],
    ['the password', PASSWORD],
    ["the second factor's secret", signed.secret!],
    ['the first code', `"${codeAt(signed.secret!, signed.step!)}"`],
    ['the login code', `"${code}"`],
    ['a field for a password', '"password"'],
    ['a field for a code', '"totp_code"'],
  ] as const) {
    t.notOk(seen.includes(secret), `${what} is not in what the relay read`)
  }
})

/** A relay with the stolen keys that puts keys of its own, proven over the request's challenge, into logins and sign-ups. */
function keySwappingRelay() {
  const attacker = generateUserKeys()
  return rewritingRelay(t, stolen, proxy.web, (route, fields) =>
    route === 'POST /v1/login' || route === 'POST /v1/signup/complete' ? { ...fields, ...provenKeyFields(attacker, 'test-cluster', fields.nonce as string) } : undefined,
  )
}

t.test('a relay with a proxy’s keys cannot have a sign-up or a login certify keys of its own', async (t) => {
  const added = await auth.ctl(['users', 'add', 'erin', `--logins=${testLogin()}`, '--roles=access,editor'])
  t.equal(added.code, 0, added.stderr)
  const token = /--invite=([0-9a-f]{32})/.exec(added.stdout)![1]
  const env = { WARREN_HOME: tempDir('warren-home-') }
  const relay = await keySwappingRelay()

  const swappedSignUp = await signUp([`--proxy=${relay.address}`, `--invite=${token}`, `--ca-pin=${pin}`], env, PASSWORD)
  t.not(swappedSignUp.code, 0, 'the sign-up through the relay fails')
  t.same(relay.answers, [{ route: 'POST /v1/signup/complete', status: 400 }], 'the auth server refused the swapped keys')
  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${token}`, `--ca-pin=${pin}`], env, PASSWORD)
  t.equal(signed.code, 0, signed.code === 0 ? 'and the invitation was not spent' : signed.stderr)

  const code = codeAt(signed.secret!, signed.step! + 1)
  const swappedLogin = await warren(['login', `--proxy=${relay.address}`, '--user=erin'], { env, input: `${PASSWORD}\n${code}\n` })
  t.not(swappedLogin.code, 0, 'the login through the relay fails')
  t.same(relay.answers.at(-1), { route: 'POST /v1/login', status: 400 }, 'the auth server refused the swapped keys')
  const login = await warren(['login', `--proxy=${proxy.web}`, '--user=erin'], { env, input: `${PASSWORD}\n${code}\n` })
  t.equal(login.code, 0, login.code === 0 ? 'and the code was not used up' : login.stderr)
})

t.test('a node joining through a relay with a proxy’s keys: the token is not in what it read, nor can it spend it on another name', async (t) => {
  const token = await auth.token(['tokens', 'add', '--type=node', '--single-use'])
  const joinThrough = (authServer: string, nodename: string) => joinCluster({ authServer, token, caPins: [pin], nodename, roles: ['node'], warn: () => {} })

  // A relay that puts its own name (and keys) on the sealed token: the box no longer opens.
  const renaming = await rewritingRelay(t, stolen, proxy.web, (route, fields) => (route === 'POST /v1/join' ? { ...fields, nodename: 'planted' } : undefined))
  await t.rejects(joinThrough(renaming.address, 'pi-sealed'), /field "sealed" does not open/, 'the join renamed on the way is refused')
  t.same(renaming.answers, [{ route: 'POST /v1/join', status: 400 }])

  const before = recorded.length
  const joined = await joinThrough(relayAddress, 'pi-sealed')
  t.equal(joined.nodename, 'pi-sealed', 'the single-use token was not spent by the refused join: it joins the node')
  const seen = Buffer.concat(recorded.slice(before)).toString('latin1')
  t.match(seen, /POST \/v1\/join HTTP/, 'the relay did record the join in the clear')
  t.notOk(seen.includes(token), 'and the token is not in what it read')
  t.notMatch((await auth.ctl(['nodes', 'ls'])).stdout, /planted/, 'no node was registered under the planted name')
})
