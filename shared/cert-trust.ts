// Whether a client certificate is trusted: when its connection opens, and again whenever
// the trust changes (a CA rotation drops a CA) or its dates run out. A live connection must
// keep no more than its certificate still grants, so every server that accepts
// connections by certificate judges them here and judges them again later.

import type { X509Certificate } from 'node:crypto'
import { type CertSubject, certSubject, issuedByAny, validNow } from './cert-subject.ts'

export type Verdict = { trusted: true; subject: CertSubject } | { trusted: false; reason: string }

export interface Expected {
  clusterName: string
  /** The CAs trusted now: a certificate from a CA that left this list is refused. */
  caPems: string[]
  role: string
}

export const EXPIRED = 'the certificate has expired or is not yet valid'

/** Issuing CA, cluster and role: what the certificate says about who its holder is. */
export function judgeIdentity(cert: X509Certificate, expected: Expected): Verdict {
  if (!issuedByAny(cert, expected.caPems)) return { trusted: false, reason: 'the certificate is not from a CA this cluster trusts' }
  const subject = certSubject(cert)
  if (subject.cluster !== expected.clusterName) return { trusted: false, reason: `the certificate is from another cluster ("${subject.cluster}")` }
  if (!subject.roles.includes(expected.role)) return { trusted: false, reason: `not a ${expected.role} certificate of this cluster` }
  return { trusted: true, subject }
}

/** The identity and the validity window at `nowMs`. */
export function judgeCertificate(cert: X509Certificate, expected: Expected, nowMs = Date.now()): Verdict {
  return validNow(cert, nowMs) ? judgeIdentity(cert, expected) : { trusted: false, reason: EXPIRED }
}

/**
 * The moment a verdict made at `nowMs` may change by the certificate's dates alone: when it
 * becomes valid, or just after it expires (validNow includes the last millisecond).
 */
export function verdictDeadline(cert: X509Certificate, nowMs: number): number {
  const from = cert.validFromDate.getTime()
  return nowMs < from ? from : cert.validToDate.getTime() + 1
}

/**
 * Verdicts kept per connection until the certificate's dates or a change of trust could
 * alter them, so that judging every request costs a lookup, not a signature check.
 */
export class VerdictCache<K extends object, V> {
  private generation = 0
  private readonly entries = new WeakMap<K, { cert: X509Certificate; value: V; generation: number; until: number }>()
  private readonly now: () => number

  constructor(now: () => number = Date.now) {
    this.now = now
  }

  /** The trust changed (a CA joined or left the trusted set): every verdict is made again. */
  invalidate(): void {
    this.generation++
  }

  /** The verdict on `cert` for `key`, from `judge` unless an earlier one still holds. */
  get(key: K, cert: X509Certificate, judge: (nowMs: number) => V): V {
    const now = this.now()
    const entry = this.entries.get(key)
    // A TLS 1.2 renegotiation can change the certificate of a connection.
    if (entry && entry.generation === this.generation && now < entry.until && entry.cert.raw.equals(cert.raw)) return entry.value
    const value = judge(now)
    this.entries.set(key, { cert, value, generation: this.generation, until: verdictDeadline(cert, now) })
    return value
  }
}
