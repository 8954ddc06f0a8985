// The whole ACME flow against Pebble (Debian package `pebble`) on loopback: Pebble resolves
// the test domains through pebble-challtestsrv to 127.0.0.1 and validates TLS-ALPN-01 by a
// real TLS handshake with our test server, which answers through the same hooks the proxy
// uses. Certificates are then checked with real TLS against Pebble's issuing root, which the
// managers trust (as an operator's ca_file would) so that they take certificates from the store.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { createServer as createHttpServer } from 'node:http'
import { PassThrough } from 'node:stream'
import { connect, createSecureContext, type SecureContext } from 'node:tls'
import t, { type Test } from 'tap'
import { createLogger, type Logger } from '../../shared/log.ts'
import { createCA, createCertificate } from '../../shared/x509.ts'
import { selfSignedFor } from '../../test/helpers/certs.ts'
import { ChallengeTestServer } from '../../test/helpers/challenge-test-server.ts'
import { freePort } from '../../test/helpers/cluster.ts'
import { ChallTestServer, Pebble, pebbleMissing } from '../../test/helpers/pebble.ts'
import { type AcmeCertificate, AcmeManager, type AcmeOptions } from './acme-manager.ts'
import { ACCOUNT_KEY, MemoryCertStore } from './cert-store.ts'
import { AcmeError } from './errors.ts'

const DOMAIN = 'proxy.warren.test'
const WEB_DOMAIN = 'www.warren.test'
const BLOCKED = 'blocked.warren.test'
const UNRESOLVED = 'nowhere.warren.test'
const SHORT_VALIDITY_SECONDS = 12
// As Let's Encrypt's: Pebble's default of five years is more than a stored certificate may last.
const VALIDITY_SECONDS = 90 * 86_400

const missing = pebbleMissing()
if (missing) {
  t.test('ACME certificates from Pebble', { skip: missing }, () => {})
} else {
  await main()
}

async function main(): Promise<void> {
  const dns = await new ChallTestServer().start()
  t.teardown(() => dns.stop())
  for (const name of [DOMAIN, WEB_DOMAIN, BLOCKED]) await dns.addA(name, '127.0.0.1')

  // Which manager the listeners answer for: one test at a time.
  let active: AcmeManager | undefined
  let context: SecureContext = placeholderContext()
  const tlsServer = await new ChallengeTestServer({
    challenge: (name) => active?.challengeContext(name),
    context: () => context,
    protocols: ['http/1.1'],
  }).listen()
  t.teardown(() => tlsServer.close())
  let httpAnswers = 0
  const httpServer = createHttpServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([\w-]+)$/.exec(req.url ?? '')?.[1]
    const body = token === undefined ? undefined : active?.httpChallenge(token)
    if (body === undefined) return res.writeHead(404).end()
    httpAnswers++
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body)
  })
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => httpServer.close(() => resolve())))
  const httpPort = (httpServer.address() as { port: number }).port

  const pebble = await new Pebble({ dnsServer: dns.dnsAddress, tlsPort: tlsServer.port, httpPort, blocklist: [BLOCKED], validitySeconds: VALIDITY_SECONDS }).start()
  t.teardown(() => pebble.stop())
  const shortLived = await new Pebble({ dnsServer: dns.dnsAddress, tlsPort: tlsServer.port, httpPort, validitySeconds: SHORT_VALIDITY_SECONDS }).start()
  t.teardown(() => shortLived.stop())
  // Both servers' HTTPS roots and issuing roots: a store shared by managers of either takes both's certificates.
  const trust = [pebble.caBundle, shortLived.caBundle, await pebble.root(), await shortLived.root()].join('\n')

  /** A manager wired like the proxy: its 'certificate' event replaces the context for new connections. */
  function manager(t: Test, server: Pebble, overrides: Partial<AcmeOptions> & { store: MemoryCertStore }) {
    const { log, lines } = capturedLog()
    const acme = new AcmeManager({
      directoryUrl: server.directoryUrl,
      email: 'ops@warren.test',
      domains: [DOMAIN],
      caBundle: trust,
      log,
      ...overrides,
    })
    const events: AcmeCertificate[] = []
    acme.on('certificate', (certificate) => {
      events.push(certificate)
      context = createSecureContext({ key: certificate.keyPem, cert: certificate.certPem })
    })
    active = acme
    t.teardown(() => {
      acme.stop()
      context = placeholderContext()
    })
    return { acme, events, lines }
  }

  /** A client that trusts only Pebble's root, as a browser would trust Let's Encrypt's. */
  async function fetchOverTls(server: Pebble, servername: string): Promise<{ peer: X509Certificate; body: string }> {
    const root = await server.root()
    return new Promise((resolve, reject) => {
      let body = ''
      const socket = connect({ host: '127.0.0.1', port: tlsServer.port, servername, ca: root, ALPNProtocols: ['http/1.1'] }, () => {
        const peer = socket.getPeerX509Certificate()!
        socket.setEncoding('utf8')
        socket.on('data', (chunk: string) => (body += chunk))
        socket.on('end', () => resolve({ peer, body }))
      })
      socket.on('error', reject)
    })
  }

  const store = new MemoryCertStore()
  let first: AcmeCertificate

  t.test('obtains a certificate by TLS-ALPN-01 and serves it over TLS', async (t) => {
    const before = tlsServer.answered
    const { acme, events } = manager(t, pebble, { store })
    await acme.start()
    t.ok(tlsServer.answered > before, 'Pebble validated through the acme-tls/1 hooks')
    first = acme.current()!
    t.ok(first, 'a certificate is in place')
    t.same(events, [first], "one 'certificate' event, carrying it")

    const { peer, body } = await fetchOverTls(pebble, DOMAIN)
    t.equal(body, 'hello\n', "a client trusting only Pebble's root connects")
    t.equal(peer.fingerprint256, new X509Certificate(first.certPem).fingerprint256, 'and sees the issued certificate')
    t.equal(peer.subjectAltName, `DNS:${DOMAIN}`)
    t.equal(first.notAfter, Date.parse(peer.validTo))

    t.ok(await store.get(ACCOUNT_KEY), 'the account key is stored')
    t.same(JSON.parse((await store.get(`acme/cert/${DOMAIN}`))!), { keyPem: first.keyPem, certPem: first.certPem }, 'the certificate is stored')
  })

  t.test('a restart reuses the stored certificate, and the stored account', async (t) => {
    const answered = tlsServer.answered
    const account = await store.get(ACCOUNT_KEY)
    const restarted = manager(t, pebble, { store })
    await restarted.acme.start()
    t.equal(restarted.acme.current()?.certPem, first.certPem, 'the stored certificate is served')
    t.same(restarted.events, [first], "and announced with a 'certificate' event")
    t.equal(tlsServer.answered, answered, 'no validation took place')
    restarted.acme.stop()

    // Without a stored certificate a new one is ordered, by the same account.
    const withoutCertificate = new MemoryCertStore()
    await withoutCertificate.put(ACCOUNT_KEY, account!)
    const again = manager(t, pebble, { store: withoutCertificate })
    await again.acme.start()
    t.not(again.acme.current()?.certPem, first.certPem, 'a new certificate')
    t.equal(await withoutCertificate.get(ACCOUNT_KEY), account, 'Pebble returned the same account for the stored key')
  })

  t.test('renews when a third of the lifetime is left, and new connections get the new certificate', async (t) => {
    const renewStore = new MemoryCertStore()
    const { acme, events, lines } = manager(t, shortLived, { store: renewStore })
    await acme.start()
    const initial = acme.current()!
    const lifetime = initial.notAfter - Date.parse(new X509Certificate(initial.certPem).validFrom)
    t.ok(lifetime <= SHORT_VALIDITY_SECONDS * 1000, `a short-lived certificate (${lifetime} ms)`)

    const renewed = await nextCertificate(acme, initial)
    t.equal(events.length, 2)
    t.ok(renewed.notAfter > initial.notAfter, 'the new certificate lasts longer')
    // Pebble dates a certificate from its issuance (whole seconds): not before the renewal point.
    const renewalPoint = initial.notAfter - lifetime / 3
    const issued = Date.parse(new X509Certificate(renewed.certPem).validFrom)
    t.ok(issued >= renewalPoint - 1000, 'renewed once two thirds of the lifetime had passed, not earlier')
    t.same(JSON.parse((await renewStore.get(`acme/cert/${DOMAIN}`))!), { keyPem: renewed.keyPem, certPem: renewed.certPem }, 'the store holds the renewal')
    const { peer } = await fetchOverTls(shortLived, DOMAIN)
    t.equal(peer.fingerprint256, new X509Certificate(renewed.certPem).fingerprint256, 'new connections get it')
    t.match(lines.join(''), /ACME certificate issued/)
  })

  t.test('a stored certificate due for renewal is served at once and renewed in the background', async (t) => {
    // The clock stands just past the renewal point of the five-year certificate from the first test.
    const notBefore = Date.parse(new X509Certificate(first.certPem).validFrom)
    let skew = first.notAfter - (first.notAfter - notBefore) / 4 - Date.now()
    const { acme, events } = manager(t, pebble, { store, clock: () => Date.now() + skew })
    const renewal = new Promise<AcmeCertificate>((resolve) => {
      acme.on('certificate', (certificate) => {
        if (certificate.certPem === first.certPem) return
        skew = 0 // the renewed certificate is fresh in real time
        resolve(certificate)
      })
    })
    await acme.start()
    t.equal(events[0]?.certPem, first.certPem, 'start() puts the stored certificate in place first')
    const renewed = await renewal
    t.not(renewed.certPem, first.certPem, 'then a renewed one')
    t.equal(acme.current()?.certPem, renewed.certPem)
  })

  t.test('a certificate another proxy renewed into the shared store is taken, not ordered again', async (t) => {
    const shared = new MemoryCertStore()
    const { acme, events, lines } = manager(t, shortLived, { store: shared })
    await acme.start()
    const answered = tlsServer.answered
    // Another proxy's renewal lands in the store before this one's renewal point.
    await shared.put(`acme/cert/${DOMAIN}`, JSON.stringify({ keyPem: first.keyPem, certPem: first.certPem }))
    const taken = await nextCertificate(acme, acme.current()!)
    t.equal(taken.certPem, first.certPem, 'the stored certificate is put in place')
    t.equal(events.length, 2)
    t.equal(tlsServer.answered, answered, 'without a new order')
    t.match(lines.join(''), /renewed elsewhere, taken from the store/)
  })

  t.test('HTTP-01, when port 80 of the domain reaches httpChallenge()', async (t) => {
    const before = httpAnswers
    const { acme } = manager(t, pebble, { store: new MemoryCertStore(), domains: [WEB_DOMAIN], challengeTypes: ['http-01'] })
    await acme.start()
    t.ok(httpAnswers > before, 'Pebble fetched the key authorization')
    t.equal(new X509Certificate(acme.current()!.certPem).subjectAltName, `DNS:${WEB_DOMAIN}`)
    t.equal(acme.httpChallenge('anything'), undefined, 'nothing is answered once the order is done')
  })

  t.test('unreadable stored records are replaced, with a warning', async (t) => {
    const damaged = new MemoryCertStore()
    await damaged.put(ACCOUNT_KEY, '{"keyPem": "not a key"}')
    await damaged.put(`acme/cert/${DOMAIN}`, '{"keyPem": "x", "certPem": "y"}')
    const { acme, lines } = manager(t, pebble, { store: damaged })
    await acme.start()
    t.ok(acme.current(), 'a new certificate')
    t.match(lines.join(''), /WARN .*ignoring the stored ACME certificate acme\/cert\/proxy\.warren\.test/)
    t.match(lines.join(''), /WARN .*ignoring the stored ACME account/)
    t.equal(JSON.parse((await damaged.get(`acme/cert/${DOMAIN}`))!).certPem, acme.current()!.certPem, 'the store holds the new certificate')
    t.not(await damaged.get(ACCOUNT_KEY), '{"keyPem": "not a key"}', 'and a new account')
  })

  t.test('a certificate planted in the store is not served: a new one is ordered', async (t) => {
    const planted = new MemoryCertStore()
    const forged = selfSignedFor(DOMAIN, new Date('2999-01-01T00:00:00Z'))
    await planted.put(`acme/cert/${DOMAIN}`, JSON.stringify(forged))
    const { acme, lines } = manager(t, pebble, { store: planted })
    await acme.start()
    t.equal(acme.orders, 1, 'ordered from Pebble')
    t.not(acme.current()!.certPem, forged.certPem, 'the planted certificate is not served')
    t.match(lines.join(''), /WARN .*ignoring the stored ACME certificate acme\/cert\/proxy\.warren\.test: its chain does not lead to a trusted root/)
    const { peer } = await fetchOverTls(pebble, DOMAIN)
    t.equal(peer.fingerprint256, new X509Certificate(acme.current()!.certPem).fingerprint256, "clients get Pebble's certificate")
    t.equal(JSON.parse((await planted.get(`acme/cert/${DOMAIN}`))!).certPem, acme.current()!.certPem, 'which replaces the planted one in the store')
  })

  t.test('a certificate planted during the lifetime is not taken as renewed elsewhere', async (t) => {
    const shared = new MemoryCertStore()
    const { acme, lines } = manager(t, shortLived, { store: shared })
    await acme.start()
    const initial = acme.current()!
    const forged = selfSignedFor(DOMAIN, new Date('2999-01-01T00:00:00Z'))
    await shared.put(`acme/cert/${DOMAIN}`, JSON.stringify(forged))
    const renewed = await nextCertificate(acme, initial)
    t.not(renewed.certPem, forged.certPem, 'the renewal is not the planted certificate')
    t.equal(acme.orders, 2, 'it was ordered from Pebble')
    t.match(lines.join(''), /ignoring the stored ACME certificate .*does not lead to a trusted root/)
  })

  t.test('a certificate whose root is not in caBundle is served, with a warning that the store will not give it back', async (t) => {
    const store = new MemoryCertStore()
    const { acme, lines } = manager(t, pebble, { store, caBundle: pebble.caBundle })
    await acme.start()
    t.ok(acme.current(), 'served: the ACME server vouched for it over HTTPS')
    t.match(lines.join(''), /WARN .*the issued ACME certificate will not be taken from the store: its chain does not lead to a trusted root.*give the ACME CA's root in ca_file/)
  })

  t.test('when another proxy creates the account first, this one shares it', async (t) => {
    const other = JSON.stringify({ keyPem: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) })
    // As the auth server does: the account keeps its first key; here the other proxy's lands just before ours.
    const racing = new (class extends MemoryCertStore {
      override async put(key: string, value: string): Promise<void> {
        if (key === ACCOUNT_KEY && !this.entries.has(key)) {
          this.entries.set(key, other)
          throw new Error('the ACME account exists with another key; proxies share it and cannot replace it')
        }
        const held = this.entries.get(key)
        if (key === ACCOUNT_KEY && held && JSON.parse(held).keyPem !== JSON.parse(value).keyPem) throw new Error('another key')
        await super.put(key, value)
      }
    })()
    const { acme } = manager(t, pebble, { store: racing })
    await acme.start()
    t.ok(acme.current(), 'the certificate is obtained')
    const account = JSON.parse((await racing.get(ACCOUNT_KEY))!)
    t.equal(account.keyPem, JSON.parse(other).keyPem, "with the other proxy's account")
    t.match(account.url, /^https:\/\/127\.0\.0\.1:\d+\//, 'which it registered')
  })

  t.test('refusals are errors naming the domain, the step and the reason', async (t) => {
    const refused = manager(t, pebble, { store: new MemoryCertStore(), domains: [BLOCKED] })
    await t.rejects(
      refused.acme.start(),
      {
        constructor: AcmeError,
        message: new RegExp(`^could not obtain a certificate for ${BLOCKED} from ${escapeRegExp(pebble.directoryUrl)}: placing the order failed: .*forbidden by policy`),
      },
      'a domain Pebble will not issue for',
    )
    t.equal(refused.acme.current(), undefined)

    const unresolved = manager(t, pebble, { store: new MemoryCertStore(), domains: [UNRESOLVED] })
    await t.rejects(
      unresolved.acme.start(),
      {
        message: new RegExp(`: validating ${UNRESOLVED} by tls-alpn-01 failed: .*${escapeRegExp(UNRESOLVED)}`),
      },
      'a domain whose validation fails',
    )

    const closedPort = await freePort()
    const unreachable = manager(t, pebble, { store: new MemoryCertStore(), directoryUrl: `https://127.0.0.1:${closedPort}/dir` })
    await t.rejects(
      unreachable.acme.start(),
      {
        message: new RegExp(`the ACME directory https://127\\.0\\.0\\.1:${closedPort}/dir is unreachable: .*ECONNREFUSED`),
      },
      'an unreachable directory',
    )

    const untrusted = manager(t, pebble, { store: new MemoryCertStore(), caBundle: undefined })
    await t.rejects(untrusted.acme.start(), { message: /presented a certificate that is not trusted .*give its CA as caBundle/ }, 'an ACME server whose certificate is not trusted')
  })

  t.test('options are checked when the manager is made', async (t) => {
    const base = { directoryUrl: pebble.directoryUrl, email: 'ops@warren.test', store: new MemoryCertStore(), log: capturedLog().log }
    t.throws(() => new AcmeManager({ ...base, domains: [] }), /at least one domain/)
    t.throws(() => new AcmeManager({ ...base, domains: ['*.warren.test'] }), /not a domain name/)
    t.throws(() => new AcmeManager({ ...base, domains: [DOMAIN], renewWhenRemaining: 1 }), /between 0 and 1/)
    t.throws(() => new AcmeManager({ ...base, domains: [DOMAIN], challengeTypes: ['dns-01' as 'http-01'] }), /challenge types/)
  })
}

/**
 * The next 'certificate' event: bounded so that a renewal that never comes fails here, once
 * the current certificate is well past its expiry, rather than at tap's timeout.
 */
function nextCertificate(acme: AcmeManager, current: AcmeCertificate): Promise<AcmeCertificate> {
  return new Promise((resolve, reject) => {
    const giveUp = setTimeout(() => reject(new Error('no new certificate even 20 s after the current one expired')), current.notAfter + 20_000 - Date.now())
    acme.once('certificate', (certificate) => {
      clearTimeout(giveUp)
      resolve(certificate)
    })
  })
}

/** Before any ACME certificate: what the proxy serves with its own identity. */
function placeholderContext(): SecureContext {
  const ca = createCA('placeholder CA', 'Warren tests', 1)
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const cert = createCertificate({
    subject: { CN: 'placeholder' },
    issuer: { CN: 'placeholder CA', O: 'Warren tests' },
    publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    dnsNames: [DOMAIN],
  })
  return createSecureContext({ key: privateKey.export({ type: 'pkcs8', format: 'pem' }), cert })
}

function capturedLog(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  const stream = new PassThrough()
  stream.on('data', (chunk: Buffer) => lines.push(chunk.toString()))
  return { log: createLogger('acme', { level: 'debug', stream }), lines }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}
