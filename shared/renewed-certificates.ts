// Renewed certificates reach a node through a proxy (or a proxy's web port), so the node
// takes them only when they are what it asked for: its own keys, its own host ID, signed by
// a host CA it trusts. With them may come a new signed set of CAs (trust-statement.ts).

import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { certSubject, issuedByAny } from './cert-subject.ts'
import { applyCertificates, applyTrust, type NodeIdentity } from './identity-store.ts'
import type { RenewedCertificates } from './protocol/hosts.ts'
import { parseSshCertificate } from './ssh-cert.ts'
import { checkTrust, TrustRefused } from './trust-statement.ts'

export class CertificatesRefused extends Error {}

/**
 * Puts `renewed` into `identity` in place, after checking it. A signed set that is newer is
 * taken first (the certificate may come from a CA only it names); one that is refused is
 * reported through `refusedTrust` and the certificates are judged by the CAs held. Throws
 * CertificatesRefused when the certificates are not for this host's keys or not from its
 * CAs. Returns whether the trusted CAs changed.
 */
export function acceptRenewed(identity: NodeIdentity, renewed: RenewedCertificates, refusedTrust: (reason: string) => void, now = Date.now()): boolean {
  let trustChanged = false
  try {
    trustChanged = checkTrust(renewed.trust, { ...identity, version: identity.trustVersion })
  } catch (error) {
    if (!(error instanceof TrustRefused)) throw error
    refusedTrust(error.message)
  }
  const cert = new X509Certificate(renewed.tls_cert)
  const hostCAs = trustChanged ? renewed.trust!.host_ca_certs : identity.hostCAPems
  if (!issuedByAny(cert, hostCAs)) throw new CertificatesRefused('the renewed certificate is not from a host CA this host trusts')
  if (!cert.publicKey.equals(createPublicKey(createPrivateKey(identity.tlsKeyPem)))) throw new CertificatesRefused('the renewed certificate is not for this host’s TLS key')
  if (certSubject(cert).commonName !== identity.hostId) throw new CertificatesRefused(`the renewed certificate names host ${certSubject(cert).commonName}, not ${identity.hostId}`)
  // An earlier certificate of ours, sent again, would put off a renewal that is due.
  if (cert.validFromDate < new X509Certificate(identity.tlsCertPem).validFromDate) throw new CertificatesRefused('the renewed certificate is older than the one held')
  const ssh = parseSshCertificate(renewed.ssh_cert)
  if (ssh.type !== 'host' || !ssh.publicKey.equals(createPublicKey(createPrivateKey(identity.sshKeyPem)))) {
    throw new CertificatesRefused('the renewed SSH certificate is not a host certificate for this host’s SSH key')
  }
  if (!ssh.principals.includes(identity.hostId) || ssh.validBefore.getTime() <= now) {
    throw new CertificatesRefused('the renewed SSH certificate does not name this host or has expired')
  }
  if (trustChanged) applyTrust(identity, renewed.trust!)
  applyCertificates(identity, renewed)
  return trustChanged
}
