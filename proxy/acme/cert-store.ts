// Where the ACME account key and the certificates are kept, so that a restarted proxy (or
// another proxy of the cluster sharing the store) reuses them instead of asking the ACME
// server again. Values are JSON records; a record that cannot be read is treated as absent
// and replaced, with a warning, rather than stopping the proxy.
//
// Every proxy of the cluster can write the store, so a stolen proxy's keys can put anything
// there. A stored certificate is served only if a CA the proxy trusts issued it
// (checkServable): otherwise those keys could plant a certificate of their own, for years,
// on every proxy.

import { createPrivateKey, X509Certificate } from 'node:crypto'
import { rootCertificates } from 'node:tls'
import { splitPems } from '../../shared/identity-store.ts'

export interface CertStore {
  get(key: string): Promise<string | undefined>
  put(key: string, value: string): Promise<void>
}

export const ACCOUNT_KEY = 'acme/account'

/** The certificate for a list of domains is stored under its first domain. */
export function certificateKey(domains: readonly string[]): string {
  return `acme/cert/${domains[0]}`
}

export interface AccountRecord {
  keyPem: string
  /** The account URL the ACME server gave for this key, and which server gave it. */
  url?: string
  directoryUrl?: string
}

export interface CertificateRecord {
  keyPem: string
  /** The leaf first, then the chain the ACME server sent. */
  certPem: string
}

/** What the proxy serves: the stored record plus what it parsed out of the leaf. */
export interface ManagedCertificate extends CertificateRecord {
  notBefore: number
  notAfter: number
  domains: string[]
}

export function parseAccountRecord(text: string): AccountRecord {
  const value = JSON.parse(text) as Partial<AccountRecord>
  if (typeof value?.keyPem !== 'string') throw new Error('the account record has no keyPem')
  createPrivateKey(value.keyPem)
  return {
    keyPem: value.keyPem,
    ...(typeof value.url === 'string' ? { url: value.url } : {}),
    ...(typeof value.directoryUrl === 'string' ? { directoryUrl: value.directoryUrl } : {}),
  }
}

/** Parses a record and checks that its key belongs to its leaf certificate. */
export function parseCertificateRecord(text: string): ManagedCertificate {
  const value = JSON.parse(text) as Partial<CertificateRecord>
  if (typeof value?.keyPem !== 'string' || typeof value.certPem !== 'string') throw new Error('the certificate record lacks keyPem or certPem')
  return describeCertificate({ keyPem: value.keyPem, certPem: value.certPem })
}

export function describeCertificate(record: CertificateRecord): ManagedCertificate {
  const leaf = new X509Certificate(record.certPem)
  if (!leaf.checkPrivateKey(createPrivateKey(record.keyPem))) throw new Error('the private key does not match the certificate')
  return {
    keyPem: record.keyPem,
    certPem: record.certPem,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    domains: dnsNames(leaf),
  }
}

/** The CA/Browser Forum's limit for a web certificate: a public CA issues none longer. */
export const MAX_LIFETIME_MS = 398 * 86_400_000
// The clocks of the CA and of the proxies differ a little; a fresh certificate may start a moment ahead.
const CLOCK_SKEW_MS = 5 * 60_000

let publicRoots: X509Certificate[] | undefined

/** The roots a served certificate must chain to: Node's public ones plus `extraPem` (ca_file). */
export function trustedRoots(extraPem = ''): X509Certificate[] {
  publicRoots ??= rootCertificates.map((pem) => new X509Certificate(pem))
  return [...publicRoots, ...splitPems(extraPem).map((pem) => new X509Certificate(pem))]
}

/**
 * Throws, saying why, unless the certificate is one a trusted ACME CA issued: its chain leads
 * to one of `roots`, it lasts no longer than a public CA allows, and it has begun.
 */
export function checkServable(certificate: ManagedCertificate, roots: readonly X509Certificate[], now: number): void {
  verifyChain(certificate.certPem, roots, now)
  const days = (certificate.notAfter - certificate.notBefore) / 86_400_000
  if (days > MAX_LIFETIME_MS / 86_400_000) throw new Error(`it is valid for ${Math.round(days)} days, longer than any CA may issue (398)`)
  if (certificate.notBefore > now + CLOCK_SKEW_MS) throw new Error(`it is not valid before ${new Date(certificate.notBefore).toISOString()}`)
}

/** The leaf (first in `certPem`) leads, through the chain after it, to one of `roots`. */
export function verifyChain(certPem: string, roots: readonly X509Certificate[], now: number): void {
  const [leaf, ...chain] = splitPems(certPem).map((pem) => new X509Certificate(pem))
  if (!leaf) throw new Error('it holds no certificate')
  let current = leaf
  // One issuer up per step: a chain that loops runs out of steps.
  for (let step = 0; step <= chain.length; step++) {
    if (roots.some((root) => issuedBy(current, root))) return
    // An intermediate must be a CA, and a current one: a leaf of a trusted CA issues nothing.
    const issuer = chain.find((candidate) => candidate.ca && withinDates(candidate, now) && issuedBy(current, candidate))
    if (!issuer) break
    current = issuer
  }
  throw new Error(`its chain does not lead to a trusted root: nothing trusted issued ${nameOf(current)} (issuer ${oneLine(current.issuer)})`)
}

function issuedBy(certificate: X509Certificate, issuer: X509Certificate): boolean {
  return certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey)
}

function withinDates(certificate: X509Certificate, now: number): boolean {
  return Date.parse(certificate.validFrom) <= now && now < Date.parse(certificate.validTo)
}

// A leaf from ACME has no subject, only alternative names.
function nameOf(certificate: X509Certificate): string {
  return certificate.subject ? oneLine(certificate.subject) : (certificate.subjectAltName ?? 'a certificate without a name')
}

function oneLine(name: string | undefined): string {
  return JSON.stringify((name ?? '').split('\n').join(', '))
}

function dnsNames(leaf: X509Certificate): string[] {
  // Node lists alternative names as `DNS:a, DNS:b, IP Address:...`; ACME names contain no commas.
  return (leaf.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase())
}

/** A CertStore in memory: for tests, and for a proxy that must not share its certificates. */
export class MemoryCertStore implements CertStore {
  readonly entries = new Map<string, string>()

  async get(key: string): Promise<string | undefined> {
    return this.entries.get(key)
  }

  async put(key: string, value: string): Promise<void> {
    this.entries.set(key, value)
  }
}
