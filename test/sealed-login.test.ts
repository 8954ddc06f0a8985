// What people type to log in reaches the auth server sealed: whoever holds a proxy's keys
// and stands where the proxy stands reads none of it. A relay with a proxy's stolen keys
// ends the TLS of `warren login` (which accepts it: a proxy certificate of the cluster's CA),
// records every byte both ways in the clear and passes them on to the real proxy. A person
// accepts an invitation and logs in through it; the record holds neither the sign-up token,
// nor the password, nor the second factor's secret or codes. Nor can such a relay have the
// person's login certify keys of its own, proven over the same challenge: the sealed box is
// bound to the keys it was sent with.

import { once } from 'node:events'
import { createServer as createHttpsServer, request } from 'node:https'
import { connect, createServer, type TLSSocket } from 'node:tls'
import t from 'tap'
import { generateUserKeys, provenKeyFields } from '../cli/credentials-files.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { authAndProxy, tempDir, testLogin, warren } from './helpers/cluster.ts'
import { codeAt, signUp } from './helpers/people.ts'

t.setTimeout(120_000)

const PASSWORD = 'a long enough passphrase'
const { auth, pin, proxy } = await authAndProxy(t)
const stolen = loadIdentity(proxy.dataDir, 'proxy')!

// The relay: TLS ended with the stolen keys, and on to the real proxy's web port.
const recorded: Buffer[] = []
const relay = createServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem }, (client: TLSSocket) => {
  const [host, port] = proxy.web.split(':')
  const upstream = connect({ host, port: Number(port), rejectUnauthorized: false, servername: 'warren-cluster' })
  client.on('data', (chunk: Buffer) => {
    recorded.push(chunk)
    upstream.write(chunk)
  })
  upstream.on('data', (chunk: Buffer) => {
    recorded.push(chunk)
    client.write(chunk)
  })
  const close = () => {
    client.destroy()
    upstream.destroy()
  }
  client.on('error', close).on('close', close)
  upstream.on('error', close).on('close', close)
})
relay.listen(0, '127.0.0.1')
await once(relay, 'listening')
t.teardown(() => relay.close())
const relayAddress = `127.0.0.1:${(relay.address() as { port: number }).port}`

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

/** An HTTPS relay with the stolen keys that puts keys of its own, proven over the request's challenge, into logins and sign-ups. */
async function keySwappingRelay(): Promise<{ address: string; answers: { route: string; status: number }[] }> {
  const attacker = generateUserKeys()
  const answers: { route: string; status: number }[] = []
  const server = createHttpsServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem }, async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    let body = Buffer.concat(chunks)
    const route = `${req.method} ${req.url}`
    const swapped = route === 'POST /v1/login' || route === 'POST /v1/signup/complete'
    if (swapped) {
      const fields = JSON.parse(body.toString())
      body = Buffer.from(JSON.stringify({ ...fields, ...provenKeyFields(attacker, 'test-cluster', fields.nonce) }))
    }
    const [host, port] = proxy.web.split(':')
    const headers = { ...req.headers, 'content-length': String(body.length) }
    const upstream = request({ host, port: Number(port), method: req.method, path: req.url, headers, rejectUnauthorized: false, servername: 'warren-cluster' }, async (answer) => {
      const out: Buffer[] = []
      for await (const chunk of answer) out.push(chunk as Buffer)
      if (swapped) answers.push({ route, status: answer.statusCode! })
      res.writeHead(answer.statusCode!, answer.headers)
      res.end(Buffer.concat(out))
    })
    upstream.on('error', () => res.destroy())
    upstream.end(body)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, answers }
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
