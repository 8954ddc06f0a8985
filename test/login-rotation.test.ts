// A person logged in before a host CA rotation and comes back after it: the CA trusted at
// that login is gone. The login follows the bridge the rotation left (signed with the old
// CA's key) to the new CA, as a node off through a rotation does, without a pin to check.
// An address hijacked since, which relays the genuine bridges but presents a CA of its own,
// is still refused before anything secret is sent.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import t from 'tap'
import { caPin } from '../shared/pin.ts'
import { createCA } from '../shared/x509.ts'
import { AuthProcess, ProxyProcess, tempDir, testLogin, warren } from './helpers/cluster.ts'
import { codeAt, signUp } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

const PASSWORD = 'a long enough passphrase'
const pinsIn = (file: string) => (readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).map(caPin)

t.test('a login after a host CA rotation', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pinA = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin: pinA, debug: false }).start()
  t.teardown(() => proxy.stop())
  const invite = /--invite=(\S+)/.exec((await auth.ctl(['users', 'add', 'erin', `--logins=${testLogin()}`])).stdout)![1]!
  const home = tempDir('warren-home-')
  const env = { WARREN_HOME: home }
  const signedUp = await signUp([`--proxy=${proxy.web}`, `--invite=${invite}`, `--ca-pin=${pinA}`], env, PASSWORD)
  t.equal(signedUp.code, 0, 'signed up')
  const hostCAFile = join(home, 'test-cluster', 'host_ca.pem')
  t.same(pinsIn(hostCAFile), [pinA], 'the sign-up trusts the CA it was given the pin of')
  const trustedBefore = readFileSync(hostCAFile, 'utf8')
  let step = signedUp.step!

  // The whole rotation, while the person is away.
  const hostCAs = async () => (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  for (const phase of ['init', 'update_clients', 'update_servers', 'standby']) {
    const result = await auth.ctl(['auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`])
    t.equal(result.code, 0, `${phase}: ${result.stderr.trim()}`)
    if (phase === 'update_clients') {
      const pinB = (await hostCAs()).map(caPin).find((pin) => pin !== pinA)!
      // The proxy follows the rotation, as an operator stepping by hand waits for it to.
      await proxy.daemon.waitForStatus('the proxy to hold a certificate of the new CA', (s) => s.proxy?.certificate.issuer_pin === pinB, 30_000)
    }
  }
  await until('one host CA', async () => (await hostCAs()).length === 1)
  const pinB = caPin((await hostCAs())[0]!)
  t.not(pinB, pinA, 'the old CA dropped')

  t.test('the next login follows the bridge to the new CA, with no pin to give', async (t) => {
    step += 1
    const again = await warren(['login', `--proxy=${proxy.web}`, '--user=erin'], { env, input: `${PASSWORD}\n${codeAt(signedUp.secret!, step)}\n` })
    t.equal(again.code, 0, 'logged in')
    t.same(pinsIn(hostCAFile), [pinB], 'the credentials now trust the new CA only')
  })

  t.test('an address that relays the bridges but presents a CA of its own is refused before the password', async (t) => {
    const impostorCA = createCA('impostor host CA', 'test-cluster')
    const asked: string[] = []
    const impostor = createServer({ cert: impostorCA.certPem, key: impostorCA.key.export({ type: 'pkcs8', format: 'pem' }) }, (req, res) => {
      asked.push(`${req.method} ${req.url}`)
      const url = new URL(req.url ?? '/', 'https://impostor')
      if (req.method === 'GET' && url.pathname === '/v1/ca') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ cluster_name: 'test-cluster', host_ca_certs: [impostorCA.certPem] }))
        return
      }
      if (req.method === 'GET' && url.pathname === '/v1/trust/bridges') {
        // The genuine answer, unchanged: it leads to the genuine CA, not to this one.
        const upstream = httpsRequest(`https://${proxy.web}${req.url}`, { rejectUnauthorized: false }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, { 'content-type': 'application/json' })
          answer.pipe(res)
        })
        upstream.on('error', () => res.writeHead(502).end())
        upstream.end()
        return
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no"}')
    })
    impostor.listen(0, '127.0.0.1')
    await new Promise((resolve) => impostor.once('listening', resolve))
    t.teardown(() => impostor.close())
    const address = `127.0.0.1:${(impostor.address() as { port: number }).port}`

    const awayHome = tempDir('warren-home-')
    const awayDir = join(awayHome, 'test-cluster')
    mkdirSync(awayDir, { mode: 0o700 })
    writeFileSync(join(awayDir, 'host_ca.pem'), trustedBefore, { mode: 0o600 })
    const refused = await warren(['login', `--proxy=${address}`, '--user=erin'], { env: { WARREN_HOME: awayHome }, input: `${PASSWORD}\n000000\n` })
    t.not(refused.code, 0, 'the login fails')
    t.ok(
      asked.some((line) => line.startsWith('GET /v1/trust/bridges?pin=')),
      'the impostor was asked for the bridges',
    )
    t.same(
      asked.filter((line) => !line.startsWith('GET ')),
      [],
      'and sent nothing but questions: no password, no code',
    )
    t.equal(readFileSync(join(awayDir, 'host_ca.pem'), 'utf8'), trustedBefore, 'the CA trusted before is as it was')
  })
})
