// Which proxies are live reaches a node through the proxies themselves, and a node closes
// its tunnels to proxies outside the set. A proxy is not trusted with that: one whose keys
// were stolen could name itself alone and have the node drop its tunnels to the others, or
// keep naming itself after `warrenctl nodes rm`. So the auth server signs each set it hands
// out with its host CA keys and the time it read it, and a node takes a set only as a host
// CA it trusts signed it, and only when it is newer than the newest it has taken. A stolen
// proxy can relay genuine sets, never change one, and an older one it keeps is passed over.
// SECURITY.md, "A stolen proxy".

import { number, type Out, object } from './protocol/shape.ts'
import { HOST_CA_SIGNATURES, type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

const PURPOSE = 'warren live proxies v1'

export const LIVE_SET_SIGNATURE = object({
  /** When the auth server read the set (epoch ms, its clock): the newer of two sets is the later read. */
  signed_at: number({ atLeast: 0, expected: 'a time in ms' }),
  signatures: HOST_CA_SIGNATURES,
})
export type LiveSetSignature = Out<typeof LIVE_SET_SIGNATURE>

/** The proxy IDs as signed: sorted, so that every proxy relays the same set in the same order. */
export function liveSetOrder(ids: readonly string[]): string[] {
  return [...ids].sort()
}

export function signLiveSet(clusterName: string, ids: readonly string[], signers: TrustSigner[], now = Date.now()): LiveSetSignature {
  const signatures: HostCASignatures = signWithHostCAs(PURPOSE, [clusterName, now, liveSetOrder(ids)], signers)
  return { signed_at: now, signatures }
}

/** Whether a host CA among `trustedPems` signed exactly this set of proxy IDs for this cluster. */
export function liveSetSigned(clusterName: string, ids: readonly string[], signed: LiveSetSignature | undefined, trustedPems: string[]): boolean {
  if (signed === undefined) return false
  return signedByHostCA(PURPOSE, [clusterName, signed.signed_at, liveSetOrder(ids)], signed.signatures, trustedPems)
}
