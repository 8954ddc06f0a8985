// A signed set of trusted CAs (trust-statement.ts) says only what a host CA signed at some
// time. A login's answer reaches the client through a proxy, which is not trusted with it: a
// proxy's stolen keys could hand back an older set that the same CA signed (one from during
// a rotation, naming a CA dropped since), and the client would trust that CA from then on.
// So the auth server also signs, with the host CA keys that sign now, which version of the
// set is current for this answer: for the keys the answer certifies, which the client made
// for this request, so that no word given for another request (an earlier one, an insider's)
// can be handed back with it. The client takes the set only with such a word for its
// version and its own keys, by a CA it trusted before the answer came.

import { createHash, type KeyObject } from 'node:crypto'
import { type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

const PURPOSE = 'warren current trust v1'

export interface CurrentTrustSignature {
  /** The version of the set the cluster trusts now. */
  version: number
  signatures: HostCASignatures
}

/** The keys an answer certifies: its TLS and SSH public keys. */
export interface CertifiedKeys {
  tls: KeyObject
  ssh: KeyObject
}

export function signCurrentTrust(clusterName: string, version: number, keys: CertifiedKeys, signers: TrustSigner[]): CurrentTrustSignature {
  return { version, signatures: signWithHostCAs(PURPOSE, payload(clusterName, version, keys), signers) }
}

/** Whether a host CA among `trustedPems` signed that `version` is current, for an answer certifying `keys`. */
export function currentTrustSigned(clusterName: string, version: number, keys: CertifiedKeys, signed: CurrentTrustSignature | undefined, trustedPems: string[]): boolean {
  if (signed === undefined || !Array.isArray(signed.signatures)) return false
  return signedByHostCA(PURPOSE, payload(clusterName, version, keys), signed.signatures, trustedPems)
}

function payload(clusterName: string, version: number, keys: CertifiedKeys): unknown[] {
  return [clusterName, version, keyDigest(keys.tls), keyDigest(keys.ssh)]
}

/** SHA-256 of a public key's SubjectPublicKeyInfo, base64. */
function keyDigest(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('base64')
}
