import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { type CertificateRequest, createCA, createCertificate } from './x509.ts'

const HOUR = 3_600_000

function ecKeys() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
}

function leaf(ca: { key: KeyObject; certPem: string }, overrides: Partial<CertificateRequest> = {}) {
  const { privateKey, publicKey } = ecKeys()
  const caCert = new X509Certificate(ca.certPem)
  const certPem = createCertificate({
    subject: { CN: 'node-1', O: 'cluster', OU: ['node', 'proxy'] },
    issuer: issuerName(caCert),
    publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + HOUR),
    dnsNames: ['node-1.example', 'localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    extKeyUsage: ['serverAuth', 'clientAuth'],
    ...overrides,
  })
  return { key: privateKey, publicKey, certPem }
}

function pem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string
}

function issuerName(caCert: X509Certificate) {
  const fields = Object.fromEntries(caCert.subject.split('\n').map((line) => line.split('=')))
  return { CN: fields.CN, O: fields.O }
}

function openssl(args: string[], input?: string) {
  return spawnSync('openssl', args, { encoding: 'utf8', input })
}

/** The hex form `openssl x509 -text` prints for a key identifier. */
function opensslHex(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join(':')
}

function keyBitsSha1(certPem: string): Buffer {
  // SPKI DER of a P-256 key: 26 bytes of prefix (with the BIT STRING's unused-bits octet), then the point.
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' })
  return createHash('sha1')
    .update(spki.subarray(spki.length - 65))
    .digest()
}

t.test('CA and leaf parse and verify with node', async (t) => {
  const ca = createCA('Warren Host CA', 'cluster', 30)
  const caCert = new X509Certificate(ca.certPem)
  t.equal(caCert.ca, true)
  t.equal(caCert.subject, 'O=cluster\nCN=Warren Host CA')
  t.equal(caCert.issuer, caCert.subject)
  t.ok(caCert.verify(caCert.publicKey), 'CA is self-signed')
  t.ok(caCert.checkIssued(caCert))
  const from = Date.parse(caCert.validFrom)
  t.ok(from <= Date.now() - 59_000 && from >= Date.now() - 62_000, 'notBefore is a minute in the past')
  t.ok(Math.abs(Date.parse(caCert.validTo) - (Date.now() + 30 * 86_400_000)) < 5_000, 'validity in days')

  const serial = Buffer.from('00ff0102030405060708', 'hex')
  const notBefore = new Date('2030-01-02T03:04:05.678Z')
  const notAfter = new Date('2050-06-07T08:09:10Z')
  const server = leaf(ca, { serialNumber: serial, notBefore, notAfter })
  const cert = new X509Certificate(server.certPem)
  t.ok(cert.verify(caCert.publicKey), 'leaf verifies with the CA key')
  t.ok(cert.checkIssued(caCert), 'leaf issued by the CA')
  t.notOk(cert.verify(ecKeys().publicKey), 'leaf does not verify with another key')
  t.equal(cert.ca, false)
  t.equal(cert.subject, 'O=cluster\nOU=node\nOU=proxy\nCN=node-1')
  t.equal(cert.issuer, caCert.subject)
  t.equal(cert.serialNumber, 'FF0102030405060708', 'serial with the leading zero dropped')
  t.equal(new Date(cert.validFrom).toISOString(), '2030-01-02T03:04:05.000Z', 'UTCTime notBefore')
  t.equal(new Date(cert.validTo).toISOString(), '2050-06-07T08:09:10.000Z', 'GeneralizedTime notAfter past 2049')
  t.equal(cert.subjectAltName, 'DNS:node-1.example, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
  t.equal(cert.checkHost('node-1.example'), 'node-1.example')
  t.equal(cert.checkHost('node-2.example'), undefined)
  t.equal(cert.checkIP('127.0.0.1'), '127.0.0.1')
  t.equal(cert.checkIP('::1'), '::1')
  t.equal(cert.checkIP('127.0.0.2'), undefined)
  t.same(cert.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])
  t.ok(cert.publicKey.export({ type: 'spki', format: 'der' }).equals(server.publicKey.export({ type: 'spki', format: 'der' })))
})

t.test('default serials are 16 random positive bytes', async (t) => {
  const ca = createCA('Warren Host CA', 'cluster')
  const serials = new Set<string>()
  for (let i = 0; i < 20; i++) {
    const serial = new X509Certificate(leaf(ca).certPem).serialNumber
    // Node prints the value without DER's sign octet: a positive number below 2^127.
    const value = BigInt(`0x${serial}`)
    t.ok(value > 0n && value < 2n ** 127n, `serial ${serial}`)
    serials.add(serial)
  }
  t.equal(serials.size, 20)
})

t.test('subject public keys of every supported kind encode exactly', async (t) => {
  const ca = createCA('Warren Host CA', 'cluster')
  const keys = [
    ...Array.from({ length: 50 }, () => ecKeys().publicKey),
    ...Array.from({ length: 20 }, () => generateKeyPairSync('ed25519').publicKey),
    generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
  ]
  const differing = keys.filter((publicKey) => {
    const cert = new X509Certificate(leaf(ca, { publicKey }).certPem)
    return !cert.publicKey.export({ type: 'spki', format: 'der' }).equals(publicKey.export({ type: 'spki', format: 'der' }))
  })
  t.same(
    differing.map((key) => key.asymmetricKeyType),
    [],
    'every key comes back as it went in',
  )
  const rsaText = openssl(['x509', '-noout', '-text'], leaf(ca, { publicKey: keys.at(-1) }).certPem).stdout
  t.match(rsaText, /Key Usage: critical\n\s+Digital Signature, Key Encipherment/)
})

t.test('openssl verifies and parses', async (t) => {
  const dir = t.testdir()
  const ca = createCA('Warren Host CA', 'cluster')
  const server = leaf(ca, { extKeyUsage: ['serverAuth'] })
  writeFileSync(join(dir, 'ca.pem'), ca.certPem)
  writeFileSync(join(dir, 'leaf.pem'), server.certPem)
  const verified = openssl(['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslserver', join(dir, 'leaf.pem')])
  t.equal(verified.status, 0, verified.stderr)
  t.match(verified.stdout, /leaf\.pem: OK/)
  const asClient = openssl(['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslclient', join(dir, 'leaf.pem')])
  t.not(asClient.status, 0, 'a serverAuth-only leaf is refused for client use')

  const caText = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'ca.pem')], { encoding: 'utf8' })
  t.match(caText, /Version: 3 \(0x2\)/)
  t.match(caText, /Signature Algorithm: ecdsa-with-SHA256/)
  t.match(caText, /Basic Constraints: critical\n\s+CA:TRUE\n/)
  t.match(caText, /Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/)
  const caKeyId = opensslHex(keyBitsSha1(ca.certPem))
  t.match(caText, new RegExp(`Subject Key Identifier: \\n\\s+${caKeyId}\\n`))
  t.match(caText, new RegExp(`Authority Key Identifier: \\n\\s+${caKeyId}\\n`), 'self-signed: AKID is its own key')

  const leafText = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'leaf.pem')], { encoding: 'utf8' })
  t.match(leafText, /Basic Constraints: critical\n\s+CA:FALSE\n/)
  t.match(leafText, /Key Usage: critical\n\s+Digital Signature\n/)
  t.match(leafText, /Extended Key Usage: \n\s+TLS Web Server Authentication\n/)
  t.match(leafText, /DNS:node-1.example, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1/)
  t.match(leafText, new RegExp(`Subject Key Identifier: \\n\\s+${opensslHex(keyBitsSha1(server.certPem))}\\n`))
  t.match(leafText, new RegExp(`Authority Key Identifier: \\n\\s+${caKeyId}\\n`))
  const strict = openssl(['x509', '-noout', '-in', join(dir, 'leaf.pem'), '-ext', 'subjectAltName'])
  t.equal(strict.status, 0)

  // A strict DER re-encode must reproduce the bytes exactly.
  const der = new X509Certificate(server.certPem).raw
  const reencoded = execFileSync('openssl', ['x509', '-inform', 'PEM', '-outform', 'DER', '-in', join(dir, 'leaf.pem')])
  t.ok(reencoded.equals(der), 'openssl re-encodes the same DER')
})

t.test('IPv6 addresses in every textual form', async (t) => {
  const ca = createCA('Warren Host CA', 'cluster')
  const cert = new X509Certificate(
    leaf(ca, {
      dnsNames: [],
      ipAddresses: ['2001:db8::8:800:200c:417a', 'fe80::', '::ffff:192.0.2.1', '1:2:3:4:5:6:7:8'],
    }).certPem,
  )
  t.equal(cert.subjectAltName, 'IP Address:2001:DB8:0:0:8:800:200C:417A, IP Address:FE80:0:0:0:0:0:0:0, IP Address:0:0:0:0:0:FFFF:C000:201, IP Address:1:2:3:4:5:6:7:8')
  t.equal(cert.checkIP('2001:db8::8:800:200c:417a'), '2001:db8::8:800:200c:417a')
  t.equal(cert.checkIP('fe80::'), 'fe80::')
  t.equal(cert.checkIP('::ffff:192.0.2.1'), '::ffff:192.0.2.1')
  t.equal(cert.checkIP('1:2:3:4:5:6:7:8'), '1:2:3:4:5:6:7:8')
  t.equal(cert.checkIP('1:2:3:4:5:6:7:9'), undefined)
  t.throws(() => leaf(ca, { ipAddresses: ['fe80::1%eth0'] }), /invalid IP address/)
  t.throws(() => leaf(ca, { ipAddresses: ['300.1.1.1'] }), /invalid IP address/)
  t.throws(() => leaf(ca, { dnsNames: ['bad name'] }), /invalid DNS name/)
})

t.test('requests that cannot make a valid certificate are refused', async (t) => {
  const ca = createCA('Warren Host CA', 'cluster')
  t.throws(() => leaf(ca, { notBefore: new Date(), notAfter: new Date(Date.now() - 1000) }), /notAfter/)
  t.throws(() => leaf(ca, { serialNumber: Buffer.alloc(21, 0x11) }), /serial/)
  t.throws(() => leaf(ca, { signingKey: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey }), /unsupported certificate signing key/)
  t.throws(() => leaf(ca, { signingKey: ecKeys().publicKey }), /private key/)
})

t.test('further extensions are written as given, after the standard ones', async (t) => {
  const ca = createCA('Warren Host CA', 'cluster')
  // A private-use OID; extnValue is the DER of a UTF8String.
  const value = Buffer.concat([Buffer.of(0x0c, 5), Buffer.from('hello')])
  const { certPem } = leaf(ca, { extensions: [{ oid: '1.3.6.1.4.1.55555.1', critical: false, value }] })
  const text = openssl(['x509', '-noout', '-text'], certPem)
  t.equal(text.status, 0, text.stderr)
  t.match(text.stdout, /X509v3 Authority Key Identifier:[\s\S]*1\.3\.6\.1\.4\.1\.55555\.1:\s+\.\.hello/, 'after authorityKeyIdentifier, with its value')
  const critical = leaf(ca, { extensions: [{ oid: '1.3.6.1.4.1.55555.1', critical: true, value }] }).certPem
  t.match(openssl(['x509', '-noout', '-text'], critical).stdout, /1\.3\.6\.1\.4\.1\.55555\.1: critical/)
  t.ok(new X509Certificate(critical).verify(new X509Certificate(ca.certPem).publicKey), 'signed over them')

  // RFC 5280 4.2: no extension twice.
  t.throws(() => leaf(ca, { extensions: [{ oid: '2.5.29.17', critical: false, value: Buffer.of(0x30, 0) }] }), /2\.5\.29\.17 is given twice/)
  const twice = { oid: '1.3.6.1.4.1.55555.1', critical: false, value }
  t.throws(() => leaf(ca, { extensions: [twice, twice] }), /given twice/)
})

t.test('TLS 1.3 handshake with leaf certificates on both sides', async (t) => {
  const ca = createCA('Warren Host CA', 'cluster')
  const server = leaf(ca, { subject: { CN: 'proxy' }, extKeyUsage: ['serverAuth'] })
  const client = leaf(ca, { subject: { CN: 'node-7', O: 'cluster' }, extKeyUsage: ['clientAuth'], dnsNames: [], ipAddresses: [] })
  const stranger = leaf(createCA('Warren Host CA', 'cluster'), { subject: { CN: 'intruder' }, extKeyUsage: ['clientAuth'] })

  // The enforcing server, and an observing one that accepts everyone and records the verdict.
  const listen = async (rejectUnauthorized: boolean, onSecure: (socket: tls.TLSSocket) => void) => {
    const listener = tls.createServer(
      {
        key: pem(server.key),
        cert: server.certPem,
        ca: ca.certPem,
        requestCert: true,
        rejectUnauthorized,
        minVersion: 'TLSv1.3',
      },
      (socket) => {
        onSecure(socket)
        socket.end('hello')
      },
    )
    listener.on('tlsClientError', () => {})
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
    t.teardown(() => listener.close())
    return (listener.address() as AddressInfo).port
  }
  const admitted: unknown[] = []
  const enforcing = await listen(true, (socket) => admitted.push(socket.getPeerCertificate().subject.CN))
  const verdicts: string[] = []
  const observing = await listen(false, (socket) => verdicts.push(socket.authorized ? 'authorized' : String(socket.authorizationError)))

  const connect = (port: number, identity: { key: KeyObject; certPem: string }) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, key: pem(identity.key), cert: identity.certPem, ca: ca.certPem, minVersion: 'TLSv1.3' })
      let data = ''
      socket.on('secureConnect', () => t.equal(socket.getProtocol(), 'TLSv1.3'))
      socket.on('data', (chunk) => {
        data += chunk
      })
      socket.on('end', () => (data ? resolve(data) : reject(new Error('closed without data'))))
      socket.on('error', reject)
    })

  t.equal(await connect(enforcing, client), 'hello', 'client from the same CA is accepted and verifies the server by IP')
  await t.rejects(connect(enforcing, stranger), 'client certificate from another CA is refused')
  t.same(admitted, ['node-7'], 'only the client from the same CA got through')
  await connect(observing, client)
  await connect(observing, stranger)
  t.same(verdicts, ['authorized', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'], 'the stranger fails on its signature')
})

t.test('two CAs sharing a subject name: issuers are told apart by key identifier', async (t) => {
  const dir = t.testdir()
  const first = createCA('Warren Host CA', 'cluster')
  const second = createCA('Warren Host CA', 'cluster')
  t.equal(new X509Certificate(first.certPem).subject, new X509Certificate(second.certPem).subject)
  writeFileSync(join(dir, 'both.pem'), first.certPem + second.certPem)
  writeFileSync(join(dir, 'reversed.pem'), second.certPem + first.certPem)
  writeFileSync(join(dir, 'first.pem'), first.certPem)
  writeFileSync(join(dir, 'second.pem'), second.certPem)
  writeFileSync(join(dir, 'leaf1.pem'), leaf(first).certPem)
  writeFileSync(join(dir, 'leaf2.pem'), leaf(second).certPem)
  for (const bundle of ['both.pem', 'reversed.pem']) {
    for (const name of ['leaf1.pem', 'leaf2.pem']) {
      const result = openssl(['verify', '-CAfile', join(dir, bundle), join(dir, name)])
      t.equal(result.status, 0, `${name} against ${bundle}: ${result.stderr}`)
    }
  }
  t.not(openssl(['verify', '-CAfile', join(dir, 'second.pem'), join(dir, 'leaf1.pem')]).status, 0, 'leaf1 refused by the second CA')
  t.not(openssl(['verify', '-CAfile', join(dir, 'first.pem'), join(dir, 'leaf2.pem')]).status, 0, 'leaf2 refused by the first CA')
})

t.test('an Ed25519 CA signs certificates that verify', async (t) => {
  const dir = t.testdir()
  const caKeys = generateKeyPairSync('ed25519')
  const name = { CN: 'Warren User CA', O: 'cluster', name: 'user-ca' }
  const caPem = createCertificate({
    subject: name,
    issuer: name,
    publicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + HOUR),
    isCA: true,
  })
  const caCert = new X509Certificate(caPem)
  t.equal(caCert.subject, 'O=cluster\nCN=Warren User CA\nname=user-ca')
  t.ok(caCert.verify(caKeys.publicKey))
  const leafPem = leaf({ key: caKeys.privateKey, certPem: caPem }, { issuer: name }).certPem
  t.ok(new X509Certificate(leafPem).verify(caKeys.publicKey))
  t.ok(new X509Certificate(leafPem).checkIssued(caCert))
  writeFileSync(join(dir, 'ca.pem'), caPem)
  writeFileSync(join(dir, 'leaf.pem'), leafPem)
  const result = openssl(['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')])
  t.equal(result.status, 0, result.stderr)
  t.match(openssl(['x509', '-noout', '-text', '-in', join(dir, 'leaf.pem')]).stdout, /Signature Algorithm: ED25519/)
})
