// When a host certificate is renewed: in the last third of its lifetime, or at once when
// the CA that signs now did not issue it (a CA rotation). The auth server grants renewals
// by this rule and agents ask by it, so neither side has to guess the other's.

import { X509Certificate } from 'node:crypto'
import { issuedByAny, validNow } from './cert-subject.ts'
import type { NodeIdentity } from './identity-store.ts'

/** The share of a certificate's lifetime, at its end, in which it is renewed. */
export const RENEWAL_WINDOW_FRACTION = 1 / 3

/** Epoch ms from which `cert` is due for renewal. */
export function renewalDueAt(cert: X509Certificate): number {
  const from = cert.validFromDate.getTime()
  const to = cert.validToDate.getTime()
  return to - Math.floor((to - from) * RENEWAL_WINDOW_FRACTION)
}

/** Whether `cert` should be renewed now: due by its age, or not issued by the signing CA. */
export function renewalNeeded(cert: X509Certificate, signingCAPem: string | undefined, nowMs = Date.now()): boolean {
  if (nowMs >= renewalDueAt(cert)) return true
  return signingCAPem !== undefined && !issuedByAny(cert, [signingCAPem])
}

/**
 * Whether `identity`'s certificate is valid now and from a host CA it trusts. One that is
 * not can no longer renew (renewals need a valid certificate): it recovers (shared/recover.ts).
 */
export function certificateUsable(identity: NodeIdentity, nowMs = Date.now()): boolean {
  const cert = new X509Certificate(identity.tlsCertPem)
  return validNow(cert, nowMs) && issuedByAny(cert, identity.hostCAPems)
}
