import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { createCA, createCertificate } from '../../shared/x509.ts'
import { certificateKey, describeCertificate, parseAccountRecord, parseCertificateRecord } from './cert-store.ts'
import { coversDomains, renewalTime, validateFraction } from './renewal.ts'

function leaf(dnsNames: string[]): { keyPem: string; certPem: string } {
  const ca = createCA('test CA', 'Warren tests', 1)
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: {},
    issuer: { CN: 'test CA', O: 'Warren tests' },
    publicKey,
    signingKey: ca.key,
    notBefore: new Date('2030-01-01T00:00:00Z'),
    notAfter: new Date('2030-04-01T00:00:00Z'),
    dnsNames,
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem: certPem + ca.certPem }
}

t.test('a certificate record reads back with its lifetime and names', async (t) => {
  const record = leaf(['proxy.warren.test', 'Www.Warren.test'])
  const parsed = parseCertificateRecord(JSON.stringify(record))
  t.equal(parsed.notBefore, Date.parse('2030-01-01T00:00:00Z'))
  t.equal(parsed.notAfter, Date.parse('2030-04-01T00:00:00Z'))
  t.same(parsed.domains, ['proxy.warren.test', 'www.warren.test'], "the leaf's names, lower case")
  t.equal(certificateKey(['proxy.warren.test', 'www.warren.test']), 'acme/cert/proxy.warren.test')
})

t.test('records that cannot be served are refused', async (t) => {
  const a = leaf(['a.warren.test'])
  const b = leaf(['b.warren.test'])
  t.throws(() => describeCertificate({ keyPem: b.keyPem, certPem: a.certPem }), /does not match/)
  t.throws(() => parseCertificateRecord('{"keyPem": "x"}'), /lacks keyPem or certPem/)
  t.throws(() => parseCertificateRecord('not json'))
  t.throws(() => parseAccountRecord('{}'), /no keyPem/)
  t.throws(() => parseAccountRecord('{"keyPem": "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n"}'))
  const account = parseAccountRecord(JSON.stringify({ keyPem: a.keyPem, url: 'https://ca/acct/1', extra: 1 }))
  t.same(account, { keyPem: a.keyPem, url: 'https://ca/acct/1' })
})

t.test('renewal is due when a fraction of the lifetime remains', async (t) => {
  const lifetime = { notBefore: 0, notAfter: 90 }
  t.equal(renewalTime(lifetime, 1 / 3), 60)
  t.equal(renewalTime(lifetime, 0.5), 45)
  t.throws(() => validateFraction(0))
  t.throws(() => validateFraction(1))
  t.throws(() => validateFraction(Number.NaN))
  t.ok(coversDomains(['a.test', 'b.test'], ['B.test']))
  t.notOk(coversDomains(['a.test'], ['a.test', 'b.test']))
})
