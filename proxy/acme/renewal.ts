// When a certificate is renewed: once less than a fraction of its lifetime remains (a third
// by default, as Let's Encrypt advises: 30 days of a 90-day certificate), and at once when it
// does not cover the configured domains. Failed attempts retry with backoff, never later
// than the certificate's own renewal point would have allowed for.

export const DEFAULT_RENEW_WHEN_REMAINING = 1 / 3

/** Timers longer than this (and than Node's 2³¹−1 ms limit) are re-armed in steps. */
export const MAX_TIMER_MS = 6 * 3_600_000

/** A failed renewal is retried after a delay growing from here to RETRY_CAP_MS. */
export const RETRY_BASE_MS = 60_000
export const RETRY_CAP_MS = 3_600_000

export interface Lifetime {
  notBefore: number
  notAfter: number
}

export function validateFraction(fraction: number): number {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`renewWhenRemaining must be between 0 and 1 (a fraction of the lifetime), got ${fraction}`)
  return fraction
}

/** The moment from which a certificate is due for renewal. */
export function renewalTime(certificate: Lifetime, fraction: number): number {
  return certificate.notAfter - fraction * (certificate.notAfter - certificate.notBefore)
}

/** Whether the certificate names every domain (exactly; ACME issues no wildcards here). */
export function coversDomains(certificateDomains: readonly string[], domains: readonly string[]): boolean {
  const have = new Set(certificateDomains.map((name) => name.toLowerCase()))
  return domains.every((name) => have.has(name.toLowerCase()))
}
