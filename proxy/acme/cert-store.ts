// Where the ACME account key and the certificates are kept, so that a restarted proxy (or
// another proxy of the cluster sharing the store) reuses them instead of asking the ACME
// server again. Values are JSON records; a record that cannot be read is treated as absent
// and replaced, with a warning, rather than stopping the proxy.

import { createPrivateKey, X509Certificate } from 'node:crypto'

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
