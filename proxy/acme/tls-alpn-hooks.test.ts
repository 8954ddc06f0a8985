// TLS-ALPN-01 through real handshakes: the challenge certificate reaches a ClientHello that
// offers `acme-tls/1` for a domain with a pending challenge, and nobody else.

import { generateKeyPairSync } from 'node:crypto'
import { type ConnectionOptions, connect, createSecureContext, type SecureContext } from 'node:tls'
import acme from 'acme-client'
import t, { type Test } from 'tap'
import { createCA, createCertificate } from '../../shared/x509.ts'
import { ChallengeTestServer } from '../../test/helpers/challenge-test-server.ts'
import { ChallengeResponder } from './challenge-responder.ts'
import { ACME_TLS_ALPN } from './tls-alpn-certificate.ts'

const DOMAIN = 'proxy.warren.test'
const KEY_AUTHORIZATION = 'token-1.thumbprint'

interface Outcome {
  alpn?: string | false | null
  peerPem?: string
  received?: string
  error?: string
}

function handshake(port: number, options: ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let received = ''
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options })
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => (received += chunk))
    socket.on('end', () => resolve({ alpn: socket.alpnProtocol, peerPem: socket.getPeerX509Certificate()?.toString(), received }))
    socket.on('error', (error) => resolve({ error: error.message }))
  })
}

/** A server certificate (a CA certificate lacks digitalSignature, which TLS 1.2 needs). */
function ordinaryCertificate(): { keyPem: string; certPem: string } {
  const ca = createCA('ordinary CA', 'Warren tests', 1)
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: { CN: DOMAIN },
    issuer: { CN: 'ordinary CA', O: 'Warren tests' },
    publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    dnsNames: [DOMAIN],
    extKeyUsage: ['serverAuth'],
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem }
}

async function setUp(t: Test, byName?: (servername: string) => SecureContext | undefined) {
  const ordinary = ordinaryCertificate()
  const context = createSecureContext({ key: ordinary.keyPem, cert: ordinary.certPem })
  const responder = new ChallengeResponder()
  const server = await new ChallengeTestServer({
    challenge: (name) => responder.tlsAlpnContext(name),
    context: () => context,
    byName,
    protocols: ['http/1.1'],
  }).listen()
  t.teardown(() => server.close())
  return { responder, server, ordinaryPem: ordinary.certPem }
}

t.test('TLS 1.3: a validator gets the challenge certificate, and the connection ends', async (t) => {
  const { responder, server } = await setUp(t)
  responder.addTlsAlpn(DOMAIN, KEY_AUTHORIZATION)
  const outcome = await handshake(server.port, { servername: DOMAIN, ALPNProtocols: [ACME_TLS_ALPN], minVersion: 'TLSv1.3' })
  t.equal(outcome.error, undefined)
  t.equal(outcome.alpn, ACME_TLS_ALPN)
  t.ok(acme.crypto.isAlpnCertificateAuthorizationValid(outcome.peerPem!, KEY_AUTHORIZATION), 'the certificate proves the key authorization')
  t.equal(outcome.received, '', 'no application data follows')
  t.equal(server.answered, 1)
})

t.test('other clients of the same domain get the ordinary certificate meanwhile', async (t) => {
  const { responder, server, ordinaryPem } = await setUp(t)
  responder.addTlsAlpn(DOMAIN, KEY_AUTHORIZATION)
  for (const ALPNProtocols of [['http/1.1'], undefined]) {
    const outcome = await handshake(server.port, { servername: DOMAIN, ALPNProtocols })
    t.equal(outcome.peerPem, ordinaryPem, `ALPN ${ALPNProtocols ?? 'none'}`)
    t.equal(outcome.received, 'hello\n')
  }
  t.equal(server.answered, 0)
})

t.test('acme-tls/1 is refused for a domain without a pending challenge', async (t) => {
  const { responder, server } = await setUp(t)
  const withdraw = responder.addTlsAlpn(DOMAIN, KEY_AUTHORIZATION)
  const other = await handshake(server.port, { servername: 'other.warren.test', ALPNProtocols: [ACME_TLS_ALPN] })
  t.match(other.error, /no application protocol|no_application_protocol/i, 'another name')
  withdraw()
  const after = await handshake(server.port, { servername: DOMAIN, ALPNProtocols: [ACME_TLS_ALPN] })
  t.match(after.error, /no application protocol|no_application_protocol/i, 'the same name once the challenge is withdrawn')
  const noName = await handshake(server.port, { ALPNProtocols: [ACME_TLS_ALPN] })
  t.ok(noName.error, 'no SNI at all')
  t.equal(server.answered, 0)
})

t.test('TLS 1.2: the certificate is chosen before ALPN, so acme-tls/1 is refused, never answered wrongly', async (t) => {
  const { responder, server } = await setUp(t)
  responder.addTlsAlpn(DOMAIN, KEY_AUTHORIZATION)
  const outcome = await handshake(server.port, { servername: DOMAIN, ALPNProtocols: [ACME_TLS_ALPN], maxVersion: 'TLSv1.2' })
  t.match(outcome.error, /no application protocol|alert number 120/i, 'the handshake fails')
  t.equal(server.answered, 0)
  const ordinary = await handshake(server.port, { servername: DOMAIN, ALPNProtocols: ['http/1.1'], maxVersion: 'TLSv1.2' })
  t.equal(ordinary.received, 'hello\n', 'while TLS 1.2 serves ordinary clients')
})

t.test('the ordinary certificate can be chosen by SNI name, in TLS 1.2 and 1.3 alike', async (t) => {
  const web = ordinaryCertificate()
  const webContext = createSecureContext({ key: web.keyPem, cert: web.certPem })
  const { responder, server, ordinaryPem } = await setUp(t, (name) => (name === DOMAIN ? webContext : undefined))
  responder.addTlsAlpn(DOMAIN, KEY_AUTHORIZATION)
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const named = await handshake(server.port, { servername: DOMAIN, ALPNProtocols: ['http/1.1'], maxVersion })
    t.equal(named.peerPem, web.certPem, `${maxVersion}: the domain's certificate for its name`)
    const other = await handshake(server.port, { servername: 'cluster.warren.internal', ALPNProtocols: ['http/1.1'], maxVersion })
    t.equal(other.peerPem, ordinaryPem, `${maxVersion}: the socket's own for another name`)
  }
  const validator = await handshake(server.port, { servername: DOMAIN, ALPNProtocols: [ACME_TLS_ALPN] })
  t.ok(acme.crypto.isAlpnCertificateAuthorizationValid(validator.peerPem!, KEY_AUTHORIZATION), 'a pending challenge still goes first')
})
