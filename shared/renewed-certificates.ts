// Renewed certificates reach a node through a proxy (or a proxy's web port), so the node
// takes them only when they are what it asked for: its own keys, its own host ID, signed by
// a host CA it trusts. With them may come a new signed set of CAs (trust-statement.ts).
//
// The OpenSSH host certificate that comes with them is held to the TLS certificate, which a
// trusted host CA vouches for: a host certificate for this host's own SSH key, naming exactly
// what the TLS certificate names, within its dates and valid now, and signed by the SSH key
// of the host CA that issued the TLS certificate, as the signed set names it (the set the TLS
// certificate is judged by: the one held, or the newer one that came with it). A relay
// therefore cannot plant an SSH CA of its own, not even at a rotation, where the TLS
// certificate comes from a CA the host trusts only from that answer on.
//
// A host whose set names no SSH keys (it took its set from an auth server of an earlier
// version, or its identity was saved before sets carried them) falls back to what it holds:
// the key that signed the SSH certificate it holds, for as long as the host CA that issued its
// TLS certificate issues the new one too; a new key is taken only with a TLS certificate from
// another host CA, and at join, as it comes. The next set that names the keys ends that.

import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto'
import { isIP } from 'node:net'
import { certSubject, issuedByAny } from './cert-subject.ts'
import { isoTime } from './duration.ts'
import { applyCertificates, applyTrust, type NodeIdentity } from './identity-store.ts'
import { reservedName } from './nodename.ts'
import type { RenewedCertificates } from './protocol/hosts.ts'
import { type ParsedSshCertificate, parseSshCertificate, parseSshPublicKey, verifySshCertificateSignature } from './ssh-cert.ts'
import { checkTrust, TrustRefused, trustedHostCAs } from './trust-statement.ts'

export class CertificatesRefused extends Error {}

/** The certificates were refused for the SSH host certificate among them. */
export class SshCertificateRefused extends CertificatesRefused {}

/**
 * Puts `renewed` into `identity` in place, after checking it (checkRenewed). Throws
 * CertificatesRefused, changing nothing, when the certificates are not for this host's keys
 * or not from its CAs. Returns whether the trusted CAs changed.
 */
export function acceptRenewed(identity: NodeIdentity, renewed: RenewedCertificates, refusedTrust: (reason: string) => void, now = Date.now()): boolean {
  const trustChanged = checkRenewed(identity, renewed, refusedTrust, now)
  if (trustChanged) applyTrust(identity, renewed.trust!)
  applyCertificates(identity, renewed)
  return trustChanged
}

/**
 * Judges `renewed` for `identity`, changing nothing. A signed set that is newer counts first
 * (the certificate may come from a CA only it names); one that is refused is reported through
 * `refusedTrust` and the certificates are judged by the CAs held. Throws CertificatesRefused
 * (SshCertificateRefused for the SSH certificate) when they cannot be taken; returns whether
 * the trusted CAs would change.
 */
export function checkRenewed(identity: NodeIdentity, renewed: RenewedCertificates, refusedTrust: (reason: string) => void = () => {}, now = Date.now()): boolean {
  let trustChanged = false
  try {
    trustChanged = checkTrust(renewed.trust, { ...identity, version: identity.trustVersion })
  } catch (error) {
    if (!(error instanceof TrustRefused)) throw error
    refusedTrust(error.message)
  }
  // What the certificates are judged by: what would be trusted once they are taken.
  const trusted = trustChanged ? trustedHostCAs(renewed.trust!, identity) : identity
  const cert = checkHostTlsCertificate(renewed.tls_cert, {
    hostCAs: trusted.hostCAPems,
    tlsPublicKey: createPublicKey(createPrivateKey(identity.tlsKeyPem)),
    hostId: identity.hostId,
  })
  // An earlier certificate of ours, sent again, would put off a renewal that is due.
  if (cert.validFromDate < new X509Certificate(identity.tlsCertPem).validFromDate) throw new CertificatesRefused('the renewed certificate is older than the one held')
  checkHostSshCertificate(renewed.ssh_cert, {
    tlsCert: cert,
    sshPublicKey: createPublicKey(createPrivateKey(identity.sshKeyPem)),
    signers: setSshSigner(trusted, cert) ?? heldSshSigner(identity, cert),
    now,
  })
  return trustChanged
}

/** The TLS certificate of a host: from one of `hostCAs`, for its key, naming its host ID. */
export function checkHostTlsCertificate(pem: string, expected: { hostCAs: string[]; tlsPublicKey: KeyObject; hostId: string }): X509Certificate {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(pem)
  } catch {
    throw new CertificatesRefused('the TLS certificate cannot be read')
  }
  if (!issuedByAny(cert, expected.hostCAs)) throw new CertificatesRefused('the TLS certificate is not from a host CA this host trusts')
  if (!cert.publicKey.equals(expected.tlsPublicKey)) throw new CertificatesRefused('the TLS certificate is not for this host’s TLS key')
  const { commonName } = certSubject(cert)
  if (commonName !== expected.hostId) throw new CertificatesRefused(`the TLS certificate names host ${commonName}, not ${expected.hostId}`)
  return cert
}

export interface SshSigners {
  keys: KeyObject[]
  from: 'set' | 'held'
}

export interface ExpectedSshCertificate {
  /** The TLS certificate that came with it, already judged: what the SSH certificate may name, and when. */
  tlsCert: X509Certificate
  /** This host's SSH public key. */
  sshPublicKey: KeyObject
  /**
   * The host CA SSH key trusted to sign it, and where it comes from: the signed set (the key
   * of the host CA that issued the TLS certificate), or what the host holds (the key that
   * signed its SSH certificate, for a set without SSH keys). Undefined: the key it names, on
   * first use (at join from a set without SSH keys).
   */
  signers?: SshSigners
  now: number
}

/**
 * Throws SshCertificateRefused unless `line` is an OpenSSH host certificate for this host's
 * SSH key, signed by one of `signers`, naming what its TLS certificate names and nothing
 * else, within that certificate's dates and valid now. A start ahead of this host's clock is
 * taken only when it is the TLS certificate's own start (the auth server's clock is ahead of
 * this host's, and the TLS certificate, taken all the same, shows it too).
 */
export function checkHostSshCertificate(line: string, expected: ExpectedSshCertificate): ParsedSshCertificate {
  const refuse = (why: string) => new SshCertificateRefused(`the SSH host certificate ${why}`)
  let ssh: ParsedSshCertificate
  try {
    ssh = parseSshCertificate(line)
  } catch (error) {
    throw refuse(`cannot be read: ${(error as Error).message}`)
  }
  if (ssh.type !== 'host') throw refuse(`is a ${ssh.type} certificate, not a host certificate`)
  try {
    verifySshCertificateSignature(ssh, expected.signers?.keys ?? [ssh.signatureKey])
  } catch (error) {
    const why = (error as Error).message
    if (expected.signers?.from === 'set') throw refuse(`is not signed by the SSH key of the host CA that issued its TLS certificate, as the signed set names it (${why})`)
    if (expected.signers?.from === 'held')
      throw refuse(`is not signed by the host CA SSH key that signed the one this host holds, although its TLS certificate comes from the same host CA (${why})`)
    throw refuse(`does not verify (${why})`)
  }
  if (!ssh.publicKey.equals(expected.sshPublicKey)) throw refuse('is not for this host’s SSH key')
  const options = Object.keys(ssh.criticalOptions)
  if (options.length > 0) throw refuse(`carries critical options (${options.join(', ')}), which host certificates do not`)
  const names = tlsCertificateNames(expected.tlsCert)
  const principals = new Set(ssh.principals.map(normalName))
  const extra = [...principals].filter((principal) => !names.has(principal))
  if (extra.length > 0) throw refuse(`names ${quoted(extra)}, which its TLS certificate does not`)
  const missing = [...names].filter((name) => !principals.has(name))
  if (missing.length > 0) throw refuse(`does not name ${quoted(missing)}, which its TLS certificate names`)
  const from = expected.tlsCert.validFromDate.getTime()
  const to = expected.tlsCert.validToDate.getTime()
  const after = ssh.validAfter.getTime()
  const before = ssh.validBefore.getTime()
  if (after < from || before > to) throw refuse(`is valid from ${isoTime(after)} to ${isoTime(before)}, beyond its TLS certificate (${isoTime(from)} to ${isoTime(to)})`)
  if (before <= expected.now) throw refuse(`expired at ${isoTime(before)}`)
  if (after > expected.now && after !== from) throw refuse(`is not valid until ${isoTime(after)}`)
  return ssh
}

/**
 * The SSH key of the host CA that issued `tls`, as `trusted` (a signed set, as held or about
 * to be) names it; undefined when it names no SSH keys.
 */
export function setSshSigner(trusted: { hostCAPems: string[]; hostCASshKeys?: string[] }, tls: X509Certificate): SshSigners | undefined {
  const keys = trusted.hostCASshKeys
  if (keys === undefined) return undefined
  const index = trusted.hostCAPems.findIndex((pem) => issuedByAny(tls, [pem]))
  const line = keys[index]
  if (keys.length !== trusted.hostCAPems.length || line === undefined)
    throw new SshCertificateRefused('the signed set names no SSH key for the host CA that issued the TLS certificate')
  try {
    return { keys: [parseSshPublicKey(line)], from: 'set' }
  } catch (error) {
    throw new SshCertificateRefused(`the SSH key the signed set names for the host CA that issued the TLS certificate cannot be read: ${(error as Error).message}`)
  }
}

/**
 * For a host whose set names no SSH keys: the key that signed the SSH certificate `held`
 * holds, when the host CA that issued the TLS certificate it holds issued `tls` too.
 * Undefined (the key the certificate names is taken) when the host CA changed, or when what
 * is held does not say (no SSH certificate, as in some tests).
 */
function heldSshSigner(held: Pick<NodeIdentity, 'tlsCertPem' | 'sshCert' | 'hostCAPems'>, tls: X509Certificate): SshSigners | undefined {
  let signer: KeyObject
  let heldTls: X509Certificate
  try {
    signer = parseSshCertificate(held.sshCert).signatureKey
    heldTls = new X509Certificate(held.tlsCertPem)
  } catch {
    return undefined
  }
  const issuer = held.hostCAPems.find((pem) => issuedByAny(heldTls, [pem]))
  return issuer !== undefined && issuedByAny(tls, [issuer]) ? { keys: [signer], from: 'held' } : undefined
}

/**
 * What a host's TLS certificate names, as the issuer (auth/certificate-names.ts) names it in
 * the SSH certificate too: the host ID, the node name unless reserved, and every DNS name and
 * IP address among its alternative names.
 */
function tlsCertificateNames(cert: X509Certificate): Set<string> {
  const { commonName, nodename } = certSubject(cert)
  const names = new Set([commonName])
  if (nodename !== undefined && !reservedName(nodename)) names.add(nodename)
  for (const [type, value] of alternativeNames(cert.subjectAltName)) {
    if (type === 'DNS' || type === 'IP Address') names.add(normalName(value))
  }
  return names
}

/** Node's text of the alternative names ("DNS:a, IP Address:127.0.0.1"): a value with a comma or quote in it comes JSON-quoted. */
function alternativeNames(text: string | undefined): [string, string][] {
  const names: [string, string][] = []
  for (const match of (text ?? '').matchAll(/([^:,"]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    const value = match[2]!
    names.push([match[1]!, value.startsWith('"') ? (JSON.parse(value) as string) : value])
  }
  return names
}

/** IPv6 addresses in one form (OpenSSL writes them whole and in capitals, the issuer as configured). */
function normalName(name: string): string {
  if (isIP(name) !== 6) return name
  try {
    return new URL(`http://[${name}]`).hostname.slice(1, -1)
  } catch {
    return name
  }
}

const quoted = (names: string[]) => names.map((name) => JSON.stringify(name)).join(', ')
