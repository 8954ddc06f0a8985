// The TLS-ALPN-01 certificate as other parsers read it: OpenSSL, and acme-client's own check
// (@peculiar/x509), which is independent of our DER encoder.

import { spawnSync } from 'node:child_process'
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import acme from 'acme-client'
import t from 'tap'
import { ACME_IDENTIFIER_OID, createTlsAlpnCertificate } from './tls-alpn-certificate.ts'

const keyAuthorization = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI'

t.test('OpenSSL reads a self-signed certificate for the domain with the critical acmeIdentifier', async (t) => {
  const { keyPem, certPem } = createTlsAlpnCertificate('proxy.warren.test', keyAuthorization)
  const text = spawnSync('openssl', ['x509', '-noout', '-text'], { input: certPem, encoding: 'utf8' })
  t.equal(text.status, 0, text.stderr)
  t.match(text.stdout, /X509v3 Subject Alternative Name: critical\s+DNS:proxy\.warren\.test\s/)
  t.match(text.stdout, new RegExp(`${ACME_IDENTIFIER_OID.replace(/\./g, '\\.')}: critical`))
  // The extension's value: an OCTET STRING of the 32-byte SHA-256 of the key authorization.
  const digest = createHash('sha256').update(keyAuthorization).digest('hex').toUpperCase()
  const parsed = spawnSync('openssl', ['asn1parse'], { input: certPem, encoding: 'utf8' })
  t.match(
    parsed.stdout,
    new RegExp(`:${ACME_IDENTIFIER_OID.replace(/\./g, '\\.')}\\s*\\n.*BOOLEAN\\s+:255\\s*\\n.*OCTET STRING\\s+\\[HEX DUMP\\]:0420${digest}\\n`),
    'the extension holds the digest of the key authorization',
  )

  const certificate = new X509Certificate(certPem)
  t.equal(certificate.issuer, certificate.subject, 'self-issued')
  t.ok(certificate.verify(certificate.publicKey), 'self-signed')
  t.ok(certificate.checkPrivateKey(createPrivateKey(keyPem)), 'the key belongs to the certificate')
  t.equal(certificate.subjectAltName, 'DNS:proxy.warren.test', 'names the domain and nothing else')
})

t.test("acme-client's own check accepts it for this key authorization only", async (t) => {
  const { certPem } = createTlsAlpnCertificate('proxy.warren.test', keyAuthorization)
  t.ok(acme.crypto.isAlpnCertificateAuthorizationValid(certPem, keyAuthorization))
  t.notOk(acme.crypto.isAlpnCertificateAuthorizationValid(certPem, keyAuthorization + 'x'))
})

t.test('the extension encodes as RFC 8737 gives it', async (t) => {
  const digest = createHash('sha256').update('k').digest('hex')
  const der = new X509Certificate(createTlsAlpnCertificate('proxy.warren.test', 'k').certPem).raw
  // SEQUENCE { OID 1.3.6.1.5.5.7.1.31, BOOLEAN TRUE, OCTET STRING { OCTET STRING (32) } }
  const extension = `3031` + `06082b0601050507011f` + `0101ff` + `0422` + `0420${digest}`
  t.ok(der.toString('hex').includes(extension), 'the certificate holds it byte for byte')
})

t.test('refuses a name that cannot go in a dNSName', async (t) => {
  t.throws(() => createTlsAlpnCertificate('bad name', keyAuthorization), /invalid DNS name/)
  t.throws(() => createTlsAlpnCertificate('proxy.wärren.test', keyAuthorization), /invalid DNS name/)
})
