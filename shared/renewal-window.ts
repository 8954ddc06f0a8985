// When a host certificate is renewed: in the last third of its lifetime, or at once when
// the CA that signs now did not issue it (a CA rotation). The auth server grants renewals
// by this rule and agents ask by it, so neither side has to guess the other's.

import type { X509Certificate } from 'node:crypto'
import { issuedByAny } from './cert-subject.ts'

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
