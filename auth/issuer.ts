// Turns public keys into signed identities. Private keys never reach the auth server:
// callers send public keys and receive certificates.

import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import type { Authority } from './authorities.ts'
import { hostCertificateNames, serverCertificateNames } from './certificate-names.ts'
import { checkSshKey, checkTlsKey } from './key-policy.ts'
import { createCertificate } from '../shared/x509.ts'
import { createSshCertificate } from '../shared/ssh-cert.ts'

/** Host certificates live a year; the agent renews them long before that with its identity. */
export const HOST_CERT_TTL_MS = 365 * 24 * 3600_000
/** warrenctl's admin identity is rewritten at every start of the auth server. */
export const ADMIN_CERT_TTL_MS = 30 * 24 * 3600_000
/** Certificates start a minute in the past so that a device whose clock lags still accepts them. */
const CLOCK_SKEW_MS = 60_000

export interface HostIdentityRequest {
  hostId: string
  nodename: string
  clusterName: string
  roles: string[]
  tlsPublicKey: KeyObject
  sshPublicKey: KeyObject
  /** A proxy's configured public addresses (hosts only), from its registry record. */
  publicAddrs?: string[]
  ttlMs?: number
  /** Epoch ms the validity starts from (default: now). */
  nowMs?: number
}

export interface HostIdentity {
  tlsCertPem: string
  sshCert: string
}

/** Certificates for a host's keys; throws KeyPolicyError for a key type the cluster does not certify. */
export function issueHostIdentity(hostCA: Authority, request: HostIdentityRequest): HostIdentity {
  checkTlsKey(request.tlsPublicKey)
  checkSshKey(request.sshPublicKey)
  const now = request.nowMs ?? Date.now()
  const ttl = request.ttlMs ?? HOST_CERT_TTL_MS
  const validAfter = new Date(now - CLOCK_SKEW_MS)
  const validBefore = new Date(now + ttl)
  const { dnsNames, ipAddresses, principals } = hostCertificateNames(request)
  const signing = hostCA.signing
  const tlsCertPem = createCertificate({
    subject: { CN: request.hostId, O: request.clusterName, OU: request.roles, name: request.nodename },
    issuer: { CN: `${request.clusterName} host CA`, O: request.clusterName },
    publicKey: request.tlsPublicKey,
    signingKey: signing.tlsKey,
    notBefore: validAfter,
    notAfter: validBefore,
    dnsNames,
    ipAddresses,
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
  const sshCert = createSshCertificate({
    publicKey: request.sshPublicKey,
    caKey: signing.sshKey,
    type: 'host',
    keyId: request.hostId,
    principals,
    validAfter,
    validBefore,
  })
  return { tlsCertPem, sshCert }
}

export interface KeyAndCert {
  keyPem: string
  certPem: string
}

/** The TLS identity a server role presents (auth's API, a proxy's web and tunnel ports). */
export function issueServerCredentials(hostCA: Authority, options: { clusterName: string; role: string; hostId?: string; names: string[] }): KeyAndCert {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const hostId = options.hostId ?? randomUUID()
  const now = Date.now()
  const { dnsNames, ipAddresses } = serverCertificateNames(options.names)
  const certPem = createCertificate({
    subject: { CN: hostId, O: options.clusterName, OU: [options.role] },
    issuer: { CN: `${options.clusterName} host CA`, O: options.clusterName },
    publicKey,
    signingKey: hostCA.signing.tlsKey,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + HOST_CERT_TTL_MS),
    dnsNames,
    ipAddresses,
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem }
}

/** warrenctl's client certificate, signed by the user CA with the admin role. */
export function issueAdminCredentials(userCA: Authority, clusterName: string): KeyAndCert {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const now = Date.now()
  const certPem = createCertificate({
    subject: { CN: 'admin', O: clusterName, OU: ['admin'] },
    issuer: { CN: `${clusterName} user CA`, O: clusterName },
    publicKey,
    signingKey: userCA.signing.tlsKey,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + ADMIN_CERT_TTL_MS),
    extKeyUsage: ['clientAuth'],
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem }
}
