// Reads the fields Warren puts in certificate subjects: CN = host ID (or user name),
// O = cluster name, OU = roles, name = node name.

import { X509Certificate } from 'node:crypto'

export interface CertSubject {
  commonName: string
  cluster: string
  roles: string[]
  nodename?: string
}

export function certSubject(cert: X509Certificate | string): CertSubject {
  const x509 = typeof cert === 'string' ? new X509Certificate(cert) : cert
  const subject: CertSubject = { commonName: '', cluster: '', roles: [] }
  for (const line of x509.subject.split('\n')) {
    const eq = line.indexOf('=')
    if (eq < 0) continue
    const field = line.slice(0, eq)
    const value = line.slice(eq + 1)
    if (field === 'CN') subject.commonName = value
    else if (field === 'O') subject.cluster = value
    else if (field === 'OU') subject.roles.push(value)
    else if (field === 'name') subject.nodename = value
  }
  return subject
}

/** True when `cert` was signed by one of `caPems` (signature checked, not just names). */
export function issuedByAny(cert: X509Certificate, caPems: string[]): boolean {
  return caPems.some((pem) => {
    const ca = parsedCA(pem)
    return cert.checkIssued(ca) && cert.verify(ca.publicKey)
  })
}

/**
 * True while `cert` is within its validity period. A resumed TLS session skips OpenSSL's
 * checks of the certificate it was first made with, so whoever accepts a connection by its
 * certificate checks the dates itself.
 */
export function validNow(cert: X509Certificate, nowMs = Date.now()): boolean {
  return cert.validFromDate.getTime() <= nowMs && nowMs <= cert.validToDate.getTime()
}

/**
 * CA certificates parsed once: a proxy checks every tunnel's certificate against the same
 * few CAs, thousands of times when a fleet reconnects. Few entries (the CAs of rotations).
 */
const parsedCAs = new Map<string, X509Certificate>()
function parsedCA(pem: string): X509Certificate {
  let ca = parsedCAs.get(pem)
  if (!ca) {
    if (parsedCAs.size >= 16) parsedCAs.clear()
    ca = new X509Certificate(pem)
    parsedCAs.set(pem, ca)
  }
  return ca
}
