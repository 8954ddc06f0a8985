// A user's certificates and what comes with them (the host CAs, the nodes' host keys) reach
// warren login, and warrenctl auth sign away from the auth host, through a proxy, which is
// not trusted with what the user will trust: they are taken only as a host CA the user
// trusts already (pinned, accepted at the prompt, or saved at login) signed them.

import { type KeyObject, X509Certificate } from 'node:crypto'
import { currentTrustSigned } from '../shared/current-trust.ts'
import { WarrenError } from '../shared/errors.ts'
import type { UserCerts } from '../shared/protocol/admin.ts'
import { knownHostsSigned } from '../shared/signed-known-hosts.ts'
import { parseSshCertificate } from '../shared/ssh-cert.ts'
import { checkTrust, TrustRefused } from '../shared/trust-statement.ts'
import type { UserKeys } from './credentials-files.ts'

/** What the caller knows besides the CAs it trusts. */
export interface CheckOptions {
  /** The version of the set an earlier login took: no older set is taken. */
  trustVersion?: number
  /**
   * The answer came from the auth server itself, over TLS verified as the auth server's
   * (warrenctl on its host), not through a proxy: its set needs no word that it is current.
   */
  fromAuthServer?: boolean
}

/**
 * `signed` with the host CAs of its signed set, which must be current and not older than an
 * earlier login's; throws WarrenError, writing nothing, when a check fails: among them,
 * certificates for other keys than `keys` (what a proxy that had swapped the keys of the
 * request would hand back).
 */
export function checkedUserCerts(signed: UserCerts, cluster: string, trustedCAs: string[], keys: UserKeys, options: CheckOptions = {}): UserCerts {
  if (!sameKey(certifiedTlsKey(signed.tls_cert), keys.tls.publicKey) || !sameKey(certifiedSshKey(signed.ssh_cert), keys.ssh.publicKey)) {
    throw new WarrenError('the certificates in the answer are not for the keys this client made: nothing was written')
  }
  if (signed.cluster_name !== cluster)
    throw new WarrenError(`the answer is for cluster ${JSON.stringify(signed.cluster_name)}, not ${JSON.stringify(cluster)}: nothing was written`)
  try {
    // Not older than the set an earlier login took (that set again is taken: only its host CAs are
    // held here, so checkTrust could not tell it is the same): no proxy hands back a set a rotation replaced.
    checkTrust(signed.trust, { clusterName: cluster, hostCAPems: trustedCAs, userCASshKeys: [], version: (options.trustVersion ?? -1) - 1 })
  } catch (error) {
    if (error instanceof TrustRefused) throw new WarrenError(`the answer is not what the cluster's CA signed (${error.message}): nothing was written`)
    throw error
  }
  // The CAs trusted before the answer vouch that this set is current, for this request's keys: not one a proxy kept.
  const current = currentTrustSigned(cluster, signed.trust!.version, { tls: keys.tls.publicKey, ssh: keys.ssh.publicKey }, signed.trust_current, trustedCAs)
  if (!current && !options.fromAuthServer) {
    throw new WarrenError(
      "the answer does not show that its CAs are the cluster's current ones (a host CA trusted signs that for this request's keys): nothing was written. Its auth server may be of an earlier version, or the proxy not what it claims",
    )
  }
  const hostCAs = signed.trust!.host_ca_certs
  if (!knownHostsSigned(signed.cluster_name, signed.known_hosts, signed.known_hosts_signatures, hostCAs)) {
    throw new WarrenError("the nodes' host keys in the answer are not signed by the cluster's host CA: nothing was written")
  }
  return { ...signed, host_ca_certs: hostCAs }
}

function certifiedTlsKey(pem: string): KeyObject | undefined {
  try {
    return new X509Certificate(pem).publicKey
  } catch {
    return undefined
  }
}

function certifiedSshKey(line: string): KeyObject | undefined {
  try {
    return parseSshCertificate(line).publicKey
  } catch {
    return undefined
  }
}

function sameKey(certified: KeyObject | undefined, own: KeyObject): boolean {
  return certified?.equals(own) === true
}
