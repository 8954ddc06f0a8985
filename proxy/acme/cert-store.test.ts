import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto'
import { rootCertificates } from 'node:tls'
import t from 'tap'
import { createCA, createCertificate, type DistinguishedName } from '../../shared/x509.ts'
import { certificateKey, checkServable, describeCertificate, MAX_LIFETIME_MS, parseAccountRecord, parseCertificateRecord, trustedRoots, verifyChain } from './cert-store.ts'
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

const DAY = 86_400_000

interface Issuer {
  name: DistinguishedName
  key: KeyObject
  publicKey: KeyObject
  certPem: string
}

/** A CA certificate (self-signed without `parent`), or with isCA false a leaf that nothing should trust to issue. */
function authority(cn: string, parent?: Issuer, { isCA = true, notBefore = Date.now() - DAY, notAfter = Date.now() + 3650 * DAY } = {}): Issuer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const name = { CN: cn, O: 'Warren tests' }
  const certPem = createCertificate({
    subject: name,
    issuer: parent?.name ?? name,
    publicKey,
    signingKey: parent?.key ?? privateKey,
    issuerPublicKey: parent?.publicKey ?? publicKey,
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    isCA,
    ...(isCA ? {} : { dnsNames: [`${cn}.warren.test`], extKeyUsage: ['serverAuth' as const] }),
  })
  return { name, key: privateKey, publicKey, certPem }
}

/** A web certificate for proxy.warren.test, issued by `issuer`, with the chain after it. */
function webCertificate(issuer: Issuer, chain: string[] = [], { notBefore = Date.now() - 60_000, notAfter = Date.now() + 90 * DAY } = {}) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: {},
    issuer: issuer.name,
    publicKey,
    signingKey: issuer.key,
    issuerPublicKey: issuer.publicKey,
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    dnsNames: ['proxy.warren.test'],
    extKeyUsage: ['serverAuth'],
  })
  return describeCertificate({ keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem: [certPem, ...chain].join('') })
}

t.test('a certificate is servable when its chain leads to a trusted root', async (t) => {
  const root = authority('ACME root')
  const intermediate = authority('ACME intermediate', root)
  const roots = trustedRoots(root.certPem)
  t.equal(roots.length, rootCertificates.length + 1, "Node's public roots plus ca_file's")
  t.equal(trustedRoots(root.certPem + authority('another root').certPem).length, rootCertificates.length + 2, 'a bundle gives all of its roots')

  const now = Date.now()
  t.doesNotThrow(() => checkServable(webCertificate(intermediate, [intermediate.certPem]), roots, now), 'leaf, intermediate, root: as an ACME CA sends it')
  t.doesNotThrow(() => checkServable(webCertificate(intermediate, [intermediate.certPem, root.certPem]), roots, now), 'the root sent along too')
  t.doesNotThrow(() => checkServable(webCertificate(root), roots, now), 'a leaf the root issued itself')
  t.throws(
    () => checkServable(webCertificate(intermediate, [intermediate.certPem]), trustedRoots(), now),
    /does not lead to a trusted root/,
    'a private CA is not trusted without ca_file',
  )
})

t.test('a certificate planted in the store is refused', async (t) => {
  const root = authority('ACME root')
  const intermediate = authority('ACME intermediate', root)
  const roots = trustedRoots(root.certPem)
  const now = Date.now()

  // The attack: a certificate of the attacker's own making, for years.
  const attacker = authority('attacker CA')
  const planted = webCertificate(attacker, [attacker.certPem], { notAfter: Date.parse('2999-01-01T00:00:00Z') })
  t.throws(() => checkServable(planted, roots, now), /does not lead to a trusted root: nothing trusted issued .*attacker CA/, 'a self-made CA, sent as its own chain')
  t.throws(() => checkServable(webCertificate(attacker), roots, now), /does not lead to a trusted root/, 'without a chain')

  // A CA named like the trusted one, with another key: the name matches, the signature does not.
  const lookalike = { ...authority('ACME intermediate'), name: intermediate.name }
  t.throws(() => checkServable(webCertificate(lookalike, [intermediate.certPem]), roots, now), /does not lead to a trusted root/, 'a lookalike issuer name')

  // A certificate a trusted CA issued to someone else cannot issue one for our name.
  const someonesLeaf = authority('someone', intermediate, { isCA: false })
  t.throws(
    () => checkServable(webCertificate(someonesLeaf, [someonesLeaf.certPem, intermediate.certPem]), roots, now),
    /does not lead to a trusted root/,
    'a leaf of the trusted CA used as an issuer',
  )

  const expired = authority('expired intermediate', root, { notBefore: now - 400 * DAY, notAfter: now - DAY })
  t.throws(() => checkServable(webCertificate(expired, [expired.certPem]), roots, now), /does not lead to a trusted root/, 'an expired intermediate')

  // Issued by the trusted CA, but not as a CA would issue a web certificate.
  t.throws(
    () => checkServable(webCertificate(intermediate, [intermediate.certPem], { notAfter: now + MAX_LIFETIME_MS + DAY }), roots, now),
    /valid for 399 days, longer than any CA may issue/,
  )
  t.doesNotThrow(() => checkServable(webCertificate(intermediate, [intermediate.certPem], { notBefore: now, notAfter: now + MAX_LIFETIME_MS }), roots, now), '398 days is allowed')
  t.throws(
    () => checkServable(webCertificate(intermediate, [intermediate.certPem], { notBefore: now + DAY, notAfter: now + 90 * DAY }), roots, now),
    /not valid before/,
    'one that has not begun',
  )
  t.throws(() => verifyChain('', roots, now), /holds no certificate/)
})

t.test("Node's public roots are trusted as they are", async (t) => {
  // Any root of the bundle verifies as its own issuer: the walk accepts a chain that reaches it.
  const publicRoot = new X509Certificate(rootCertificates[0])
  t.ok(trustedRoots().some((root) => root.fingerprint256 === publicRoot.fingerprint256))
})
