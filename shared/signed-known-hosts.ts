// The node host keys a user's OpenSSH checks nodes by reach the user through a proxy (a
// login's answer, and the ProxyCommand's refresh before every connection), and a proxy is
// not trusted with them: a key of its choosing would let it pose as the node. So the auth
// server signs the list with its host CA keys, and the client writes only a list that a
// host CA it trusts signed (the pinned one, at login). SECURITY.md, "A stolen proxy".

import { type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

const PURPOSE = 'warren known hosts v2'
/**
 * How old a signed list may be, clocks apart included. The auth server signs the list anew
 * whenever it changes and at least every KNOWN_HOSTS_RESIGN_MS; an older one is a replay,
 * which could bring back the key of a device since removed or replaced.
 */
export const KNOWN_HOSTS_MAX_AGE_MS = 15 * 60_000

/** How long the auth server answers the same signed list while it has not changed: a small part of the age allowed. */
export const KNOWN_HOSTS_RESIGN_MS = 30_000

export interface KnownHostsSignature {
  /** When the auth server signed the list (epoch ms). */
  signed_at: number
  signatures: HostCASignatures
}

export function signKnownHosts(clusterName: string, lines: string[], signers: TrustSigner[], now = Date.now()): KnownHostsSignature {
  return { signed_at: now, signatures: signWithHostCAs(PURPOSE, [clusterName, now, lines], signers) }
}

/** Whether a host CA among `trustedPems` signed `lines` for this cluster, recently. */
export function knownHostsSigned(clusterName: string, lines: string[], signed: KnownHostsSignature | undefined, trustedPems: string[], now = Date.now()): boolean {
  if (signed === undefined || typeof signed.signed_at !== 'number' || !Array.isArray(signed.signatures)) return false
  if (Math.abs(now - signed.signed_at) > KNOWN_HOSTS_MAX_AGE_MS) return false
  return signedByHostCA(PURPOSE, [clusterName, signed.signed_at, lines], signed.signatures, trustedPems)
}
