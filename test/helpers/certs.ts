// Throwaway TLS credentials for tests: a CA of its own and loopback certificates from it.

import { generateKeyPairSync } from 'node:crypto'
import { createCA, createCertificate, type DistinguishedName } from '../../auth/x509.ts'

export interface TestCA {
  ca: ReturnType<typeof createCA>
  name: DistinguishedName
}

export function testCA(commonName: string, organization: string, validityDays?: number): TestCA {
  return { ca: createCA(commonName, organization, validityDays), name: { CN: commonName, O: organization } }
}

/** A certificate for localhost and 127.0.0.1, valid from a minute ago for `ttlMs`. */
export function loopbackCert(issuer: TestCA, subject: DistinguishedName, usage: ('serverAuth' | 'clientAuth')[], ttlMs = 3600_000): { certPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const now = Date.now()
  const certPem = createCertificate({
    subject,
    issuer: issuer.name,
    publicKey,
    signingKey: issuer.ca.key,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + ttlMs),
    ipAddresses: ['127.0.0.1'],
    dnsNames: ['localhost'],
    extKeyUsage: usage,
  })
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}
