// Judging client certificates, and keeping a verdict only while it can hold: until the
// certificate's dates change it or the trusted CAs change.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import t from 'tap'
import { judgeCertificate, judgeIdentity, VerdictCache } from './cert-trust.ts'
import { createCA, createCertificate } from './x509.ts'

const ca = createCA('c1 host CA', 'c1')
const otherCA = createCA('c1 host CA', 'c1')
const NOW = Date.parse('2030-01-01T00:00:00Z')

function cert(options: { ca?: typeof ca; cluster?: string; role?: string; notBefore?: number; notAfter?: number } = {}): X509Certificate {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return new X509Certificate(
    createCertificate({
      subject: { CN: 'host-1', O: options.cluster ?? 'c1', OU: [options.role ?? 'node'] },
      issuer: { CN: 'c1 host CA', O: 'c1' },
      publicKey,
      signingKey: (options.ca ?? ca).key,
      notBefore: new Date(options.notBefore ?? NOW - 60_000),
      notAfter: new Date(options.notAfter ?? NOW + 3_600_000),
      extKeyUsage: ['clientAuth'],
    }),
  )
}

const expected = { clusterName: 'c1', caPems: [ca.certPem], role: 'node' }

t.test('a certificate is trusted only when its dates, CA, cluster and role all are', async (t) => {
  t.match(judgeCertificate(cert(), expected, NOW), { trusted: true, subject: { commonName: 'host-1' } })
  t.match(judgeCertificate(cert({ notAfter: NOW - 1000 }), expected, NOW), { trusted: false, reason: /expired/ })
  t.match(judgeCertificate(cert({ notBefore: NOW + 60_000 }), expected, NOW), { trusted: false, reason: /not yet valid/ })
  t.match(judgeCertificate(cert({ ca: otherCA }), expected, NOW), { trusted: false, reason: /not from a CA this cluster trusts/ }, 'a CA with the same name is not the same CA')
  t.match(judgeCertificate(cert(), { ...expected, caPems: [otherCA.certPem] }, NOW), { trusted: false }, 'nor once its CA left the trusted set')
  t.match(judgeCertificate(cert({ cluster: 'c2' }), expected, NOW), { trusted: false, reason: /another cluster/ })
  t.match(judgeCertificate(cert({ role: 'proxy' }), expected, NOW), { trusted: false, reason: /not a node certificate/ })
  t.match(judgeIdentity(cert({ notAfter: NOW - 1000 }), expected), { trusted: true }, 'the identity alone leaves the dates aside')
})

t.test('a verdict is kept until the certificate expires or the trust changes', async (t) => {
  let now = NOW
  const cache = new VerdictCache<object, string>(() => now)
  const connection = {}
  const first = cert({ notAfter: NOW + 10_000 })
  let judged = 0
  const judge = (at: number) => {
    judged++
    return at <= first.validToDate.getTime() ? 'trusted' : 'expired'
  }

  t.equal(cache.get(connection, first, judge), 'trusted')
  now += 5000
  t.equal(cache.get(connection, first, judge), 'trusted')
  t.equal(judged, 1, 'a second request within the window costs no judgement')

  cache.invalidate()
  t.equal(cache.get(connection, first, judge), 'trusted')
  t.equal(judged, 2, 'judged again after a change of trust')

  t.equal(cache.get(connection, cert(), judge), 'trusted')
  t.equal(judged, 3, 'judged again when the connection shows another certificate')
  t.equal(cache.get(connection, first, judge), 'trusted')
  t.equal(judged, 4)

  now = first.validToDate.getTime()
  t.equal(cache.get(connection, first, judge), 'trusted', 'valid through its last millisecond')
  now += 1
  t.equal(cache.get(connection, first, judge), 'expired', 'and judged again just after it')
  t.equal(cache.get({}, first, judge), 'expired', 'each connection has its own verdict')
})
