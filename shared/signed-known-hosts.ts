// The node host keys a user's OpenSSH checks nodes by reach the user through a proxy (a
// login's answer, and the ProxyCommand's refresh before every connection), and a proxy is
// not trusted with them: a key of its choosing would let it pose as the node. So the auth
// server signs the list with its host CA keys, and the client writes only a list that a
// host CA it trusts signed (the pinned one, at login). SECURITY.md, "A stolen proxy".

import { type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

const PURPOSE = 'warren known hosts v1'

export function signKnownHosts(clusterName: string, lines: string[], signers: TrustSigner[]): HostCASignatures {
  return signWithHostCAs(PURPOSE, [clusterName, lines], signers)
}

/** Whether a host CA among `trustedPems` signed `lines` for this cluster. */
export function knownHostsSigned(clusterName: string, lines: string[], signatures: HostCASignatures | undefined, trustedPems: string[]): boolean {
  return signatures !== undefined && signedByHostCA(PURPOSE, [clusterName, lines], signatures, trustedPems)
}
