// Throwaway TLS credentials for tests: a CA of its own and loopback certificates from it.

import { createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { SqliteBackend } from '../../auth/backend/sqlite.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import { createCA, createCertificate, type DistinguishedName } from '../../shared/x509.ts'

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

export interface IssuingCA {
  key: KeyObject
  certPem: string
}

/** A cluster's host CA, read from its auth server's backend: what an attacker holding a stolen or expired certificate would once have had signed. */
export function hostCAOf(auth: { dataDir: string }): Promise<IssuingCA> {
  return authorityOf(auth, 'host')
}

/** A cluster's host or user CA, read from its auth server's backend. */
export async function authorityOf(auth: { dataDir: string }, type: 'host' | 'user'): Promise<IssuingCA> {
  const backend = SqliteBackend.open(join(auth.dataDir, 'backend.db'))
  try {
    const stored = JSON.parse((await backend.get(`/authorities/${type}`))!.value)
    return { key: createPrivateKey(stored.keySets[0].tlsKeyPem), certPem: stored.keySets[0].tlsCertPem }
  } finally {
    await backend.close()
  }
}

/** A node identity of cluster "test-cluster" signed by `ca`, valid for exactly `validity`. */
export function nodeIdentityFrom(ca: IssuingCA, validity: { notBefore: Date; notAfter: Date }, issuerName = 'test-cluster host CA'): NodeIdentity {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const hostId = randomUUID()
  const tlsCertPem = createCertificate({
    subject: { CN: hostId, O: 'test-cluster', OU: ['node'], name: 'intruder' },
    issuer: { CN: issuerName, O: 'test-cluster' },
    publicKey,
    signingKey: ca.key,
    ...validity,
    extKeyUsage: ['clientAuth', 'serverAuth'],
  })
  return {
    hostId,
    nodename: 'intruder',
    clusterName: 'test-cluster',
    roles: ['node'],
    authServers: [],
    tlsKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    tlsCertPem,
    sshKeyPem: '',
    sshCert: '',
    hostCAPems: [ca.certPem],
    userCASshKeys: [],
    trustVersion: 0,
  }
}

/** What a stolen proxy's keys could put in the ACME store: a certificate for `domain` of their own making, self-signed. */
export function selfSignedFor(domain: string, notAfter: Date): { keyPem: string; certPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: { CN: domain },
    issuer: { CN: domain },
    publicKey,
    signingKey: privateKey,
    notBefore: new Date(Date.now() - 60_000),
    notAfter,
    dnsNames: [domain],
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem }
}
