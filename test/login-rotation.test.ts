// A person logged in before a host CA rotation and comes back after it: the CA trusted at
// that login is gone. The login follows the bridge the rotation left (signed with the old
// CA's key) to the new CA, as a node off through a rotation does, without a pin to check.
// An address hijacked since, which relays the genuine bridges but presents a CA of its own,
// is still refused before anything secret is sent.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import t from 'tap'
import { generateUserKeys, publicKeyFields } from '../cli/credentials-files.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { caPin } from '../shared/pin.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { fetchTrustBridges } from '../shared/trust-bridge.ts'
import { signTrust, type TrustStatement } from '../shared/trust-statement.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { AuthProcess, ProxyProcess, tempDir, testLogin, warren } from './helpers/cluster.ts'
import { codeAt, signUp } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

const PASSWORD = 'a long enough passphrase'
const trustVersionIn = (home: string) => (JSON.parse(readFileSync(join(home, 'test-cluster', 'profile.json'), 'utf8')) as { trust_version?: number }).trust_version
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
  const versionBefore = trustVersionIn(home)
  t.type(versionBefore, 'number', 'with the version of the set it came in')
  let step = signedUp.step!

  // The whole rotation, while the person is away.
  const hostCAs = async () => (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  // The set the cluster trusted during the rotation, signed by both CAs: what a proxy's stolen keys could keep.
  let duringRotation: TrustStatement | undefined
  // And a whole answer from then, with the auth server's word that its set was current (for that request's keys).
  let answerThen: { trust: TrustStatement; trust_current: unknown } | undefined
  for (const phase of ['init', 'update_clients', 'update_servers', 'standby']) {
    const result = await auth.ctl(['auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`])
    t.equal(result.code, 0, `${phase}: ${result.stderr.trim()}`)
    if (phase === 'init') duringRotation = (await fetchTrustBridges(auth.address, pinA)).trust
    if (phase === 'update_servers') answerThen = await auth.api('POST', '/v1/users/erin/certs', { ...publicKeyFields(generateUserKeys()), ttl_ms: 600_000 })
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
    t.ok(trustVersionIn(home)! > versionBefore!, 'from a newer set')
  })

  t.test("a proxy's stolen keys cannot hand a first login the set from during the rotation", async (t) => {
    t.equal(duringRotation?.host_ca_certs.length, 2, 'the set kept names both CAs')
    const stolen = loadIdentity(proxy.dataDir, 'proxy')!
    let swap: ((answer: Record<string, unknown>) => Record<string, unknown>) | undefined
    const seen: string[] = []
    // The attacker relays everything to the real proxy, with the proxy's keys, and changes one field of the answer.
    const relay = createServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem }, (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const upstream = httpsRequest(
          `https://${proxy.web}${req.url}`,
          { method: req.method, headers: { 'content-type': 'application/json' }, rejectUnauthorized: false },
          (answer) => {
            const back: Buffer[] = []
            answer.on('data', (chunk: Buffer) => back.push(chunk))
            answer.on('end', () => {
              let body = Buffer.concat(back).toString()
              if (req.url === '/v1/signup/complete' && answer.statusCode === 200) {
                seen.push('answer')
                if (swap) body = JSON.stringify(swap(JSON.parse(body)))
              }
              res.writeHead(answer.statusCode ?? 502, { 'content-type': 'application/json' }).end(body)
            })
          },
        )
        upstream.on('error', () => res.writeHead(502).end())
        upstream.end(Buffer.concat(chunks))
      })
    })
    relay.listen(0, '127.0.0.1')
    await new Promise((resolve) => relay.once('listening', resolve))
    t.teardown(() => relay.close())
    const address = `127.0.0.1:${(relay.address() as { port: number }).port}`
    const invite = async (name: string) => /--invite=(\S+)/.exec((await auth.ctl(['users', 'add', name, `--logins=${testLogin()}`])).stdout)![1]!

    const relayed = tempDir('warren-home-')
    const through = await signUp([`--proxy=${address}`, `--invite=${await invite('gina')}`, `--ca-pin=${pinB}`], { WARREN_HOME: relayed }, PASSWORD)
    t.equal(through.code, 0, 'relayed as it is, the answer is taken')
    t.same(pinsIn(join(relayed, 'test-cluster', 'host_ca.pem')), [pinB])

    const swaps = {
      'the set from during the rotation': (answer: Record<string, unknown>) => ({ ...answer, trust: duringRotation, host_ca_certs: duringRotation!.host_ca_certs }),
      "that set with the auth server's word from then, for another request": (answer: Record<string, unknown>) => ({
        ...answer,
        trust: answerThen!.trust,
        trust_current: answerThen!.trust_current,
        host_ca_certs: answerThen!.trust.host_ca_certs,
      }),
    }
    t.equal(answerThen?.trust.host_ca_certs.length, 2, 'the answer kept names both CAs')
    let invited = 0
    for (const [what, change] of Object.entries(swaps)) {
      swap = change
      const swapped = tempDir('warren-home-')
      const refused = await signUp([`--proxy=${address}`, `--invite=${await invite(`hal${invited++}`)}`, `--ca-pin=${pinB}`], { WARREN_HOME: swapped }, PASSWORD)
      t.not(refused.code, 0, `${what}: the sign-up is refused`)
      t.same(readdirSync(swapped), [], `${what}: nothing is written, the dropped CA is not trusted`)
    }
    t.equal(seen.length, 3, 'the attacker changed the last two answers')
  })

  t.test('an address that relays the bridges but presents a CA of its own is refused before the password', async (t) => {
    const impostorCA = createCA('impostor host CA', 'test-cluster')
    const asked: string[] = []
    // A proxy's certificate from its CA: had the login trusted that CA, it would go on to send the login.
    const impostor = createServer(proxyCertificate(impostorCA), (req, res) => {
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

t.test('a host CA key a rotation dropped cannot bring back a login that trusts its successor', async (t) => {
  // Made here: the attacker holds the dropped CA A's key; the person trusts B, which replaced it.
  const caA = createCA('host CA A', 'test-cluster')
  const caB = createCA('host CA B', 'test-cluster')
  const userCA = sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey, 'user CA')
  // The genuine bridge of the rotation A → B, signed by both: public, and kept by anyone who asked.
  const bridgeAB = signTrust({ cluster_name: 'test-cluster', version: 2, host_ca_certs: [caB.certPem, caA.certPem], user_ca_ssh_keys: [userCA] }, [caB, caA])
  for (const answer of [
    { bridges: [], trust: bridgeAB },
    { bridges: [bridgeAB], trust: bridgeAB },
  ]) {
    const asked: string[] = []
    const impostor = createServer(proxyCertificate(caA), (req, res) => {
      asked.push(`${req.method} ${req.url}`)
      const url = new URL(req.url ?? '/', 'https://impostor')
      const reply = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
      if (req.method === 'GET' && url.pathname === '/v1/ca') return reply({ cluster_name: 'test-cluster', host_ca_certs: [caA.certPem] })
      if (req.method === 'GET' && url.pathname === '/v1/trust/bridges') return reply(answer)
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no"}')
    })
    impostor.listen(0, '127.0.0.1')
    await new Promise((resolve) => impostor.once('listening', resolve))
    const home = tempDir('warren-home-')
    mkdirSync(join(home, 'test-cluster'), { mode: 0o700 })
    writeFileSync(join(home, 'test-cluster', 'host_ca.pem'), caB.certPem, { mode: 0o600 })
    const refused = await warren(['login', `--proxy=127.0.0.1:${(impostor.address() as { port: number }).port}`, '--user=erin'], {
      env: { WARREN_HOME: home },
      input: `${PASSWORD}\n000000\n`,
    })
    impostor.close()
    t.not(refused.code, 0, `the login fails (${answer.bridges.length} bridges before the replayed set)`)
    t.ok(
      asked.some((line) => line.startsWith('GET /v1/trust/bridges?pin=')),
      'after asking for the bridges',
    )
    t.same(
      asked.filter((line) => !line.startsWith('GET ')),
      [],
      'and sends nothing',
    )
    t.equal(readFileSync(join(home, 'test-cluster', 'host_ca.pem'), 'utf8'), caB.certPem, 'B is still the CA trusted')
  }
})

/** TLS options with a proxy's certificate for 127.0.0.1 from `ca`, as the cluster's proxies have. */
function proxyCertificate(ca: ReturnType<typeof createCA>) {
  const leaf = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const cert = createCertificate({
    subject: { CN: 'proxy', O: 'test-cluster', OU: ['proxy'] },
    issuer: { CN: /CN=([^\n]+)/.exec(new X509Certificate(ca.certPem).subject)![1], O: 'test-cluster' },
    publicKey: leaf.publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    ipAddresses: ['127.0.0.1'],
    extKeyUsage: ['serverAuth'],
  })
  return { cert: cert + ca.certPem, key: leaf.privateKey.export({ type: 'pkcs8', format: 'pem' }) }
}
