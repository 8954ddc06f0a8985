// Turns public keys into signed identities. Private keys never reach the auth server:
// callers send public keys and receive certificates.

import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto'
import { createSshCertificate } from '../shared/ssh-cert.ts'
import { createCertificate } from '../shared/x509.ts'
import type { Authority } from './authorities.ts'
import { hostCertificateNames, serverCertificateNames } from './certificate-names.ts'
import { checkSshKey, checkTlsKey } from './key-policy.ts'

/**
 * Host certificates live 30 days (`auth_service.host_cert_ttl`): their holders renew them
 * when two thirds of that has passed, and a stolen one is worthless a month later.
 */
export const HOST_CERT_TTL_MS = 30 * 24 * 3600_000
/** warrenctl's admin identity lives 7 days (`auth_service.admin_cert_ttl`); the auth server rewrites it in time. */
export const ADMIN_CERT_TTL_MS = 7 * 24 * 3600_000
/**
 * Certificates start a minute in the past so that a device whose clock lags still accepts
 * them; at most a tenth of their lifetime, so that short lifetimes are not mostly past.
 */
const CLOCK_SKEW_MS = 60_000

/**
 * The validity of a certificate issued at `nowMs` for `ttlMs`, to the second as X.509 and
 * OpenSSH encode it; with `signer`, no later than its signing CA's expiry.
 */
export function validity(nowMs: number, ttlMs: number, signer?: Authority): { notBefore: Date; notAfter: Date } {
  const skew = Math.min(CLOCK_SKEW_MS, Math.floor(ttlMs / 10))
  const notAfter = new Date(wholeSeconds(nowMs + ttlMs))
  return { notBefore: new Date(wholeSeconds(nowMs - skew)), notAfter: signer ? signer.capValidBefore(notAfter, nowMs) : notAfter }
}

function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000
}

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
  /** Epoch ms when both certificates expire (their notAfter), for the host's registry record. */
  expires: number
}

/** Certificates for a host's keys; throws KeyPolicyError for a key type the cluster does not certify. */
export function issueHostIdentity(hostCA: Authority, request: HostIdentityRequest): HostIdentity {
  checkTlsKey(request.tlsPublicKey)
  checkSshKey(request.sshPublicKey)
  const { notBefore: validAfter, notAfter: validBefore } = validity(request.nowMs ?? Date.now(), request.ttlMs ?? HOST_CERT_TTL_MS, hostCA)
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
  return { tlsCertPem, sshCert, expires: validBefore.getTime() }
}

export interface KeyAndCert {
  keyPem: string
  certPem: string
}

/** The TLS identity a server role presents (auth's API, a proxy's web and tunnel ports); `nowMs`: when its validity starts from (default: now). */
export function issueServerCredentials(
  hostCA: Authority,
  options: { clusterName: string; role: string; hostId?: string; names: string[]; ttlMs?: number; nowMs?: number },
): KeyAndCert {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const hostId = options.hostId ?? randomUUID()
  const { dnsNames, ipAddresses } = serverCertificateNames(options.names)
  const certPem = createCertificate({
    subject: { CN: hostId, O: options.clusterName, OU: [options.role] },
    issuer: { CN: `${options.clusterName} host CA`, O: options.clusterName },
    publicKey,
    signingKey: hostCA.signing.tlsKey,
    ...validity(options.nowMs ?? Date.now(), options.ttlMs ?? HOST_CERT_TTL_MS, hostCA),
    dnsNames,
    ipAddresses,
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem }
}

/** warrenctl's client certificate, signed by the user CA with the admin role, valid from `nowMs`. */
export function issueAdminCredentials(userCA: Authority, clusterName: string, ttlMs = ADMIN_CERT_TTL_MS, nowMs = Date.now()): KeyAndCert {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: { CN: 'admin', O: clusterName, OU: ['admin'] },
    issuer: { CN: `${clusterName} user CA`, O: clusterName },
    publicKey,
    signingKey: userCA.signing.tlsKey,
    ...validity(nowMs, ttlMs, userCA),
    extKeyUsage: ['clientAuth'],
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem }
}
