// A signed set of trusted CAs (trust-statement.ts) says only what a host CA signed at some
// time. A login's answer reaches the client through a proxy, which is not trusted with it: a
// proxy's stolen keys could hand back an older set that the same CA signed (one from during
// a rotation, naming a CA dropped since), and the client would trust that CA from then on.
// So the auth server also signs, with the host CA keys that sign now, which version of the
// set is current, and when; the client takes a set only with such a signature for its
// version, recent, by a CA it trusted before the answer came.

import { KNOWN_HOSTS_MAX_AGE_MS } from './signed-known-hosts.ts'
import { type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

const PURPOSE = 'warren current trust v1'

export interface CurrentTrustSignature {
  /** The version of the set the cluster trusts now. */
  version: number
  /** When the auth server signed it (epoch ms). */
  signed_at: number
  signatures: HostCASignatures
}

export function signCurrentTrust(clusterName: string, version: number, signers: TrustSigner[], now = Date.now()): CurrentTrustSignature {
  return { version, signed_at: now, signatures: signWithHostCAs(PURPOSE, [clusterName, version, now], signers) }
}

/** Whether a host CA among `trustedPems` signed, within KNOWN_HOSTS_MAX_AGE_MS (clocks apart included), that `version` is current. */
export function currentTrustSigned(clusterName: string, version: number, signed: CurrentTrustSignature | undefined, trustedPems: string[], now = Date.now()): boolean {
  if (signed === undefined || signed.version !== version || typeof signed.signed_at !== 'number' || !Array.isArray(signed.signatures)) return false
  if (Math.abs(now - signed.signed_at) > KNOWN_HOSTS_MAX_AGE_MS) return false
  return signedByHostCA(PURPOSE, [clusterName, version, signed.signed_at], signed.signatures, trustedPems)
}
