// The system clock as the node can judge it. A board without a real-time clock boots in
// 1970 or at a time saved long ago, and some boot far ahead, until NTP sets them; with such
// a clock every certificate looks not yet valid or expired, and TLS fails both ways. The
// node tells this apart from a real expiry by the cluster's own certificates: its own was
// issued by the auth server's clock, and a proxy's or auth server's certificate is kept
// renewed, so one that looks outside its validity says the clock is off. The node checks
// this at every tick of its clock watch (shared/clock-watch.ts), which also tells it of the
// clock being set, after which its renewal is timed again.

import type { X509Certificate } from 'node:crypto'
import { isoTime } from '../shared/duration.ts'
import type { ClockStatus } from '../shared/status.ts'
import { probeServerCertificate } from '../shared/tls-verdict.ts'

export type { ClockStatus }

export type ClockProblem = NonNullable<ClockStatus['problem']>

/** What a certificate from the cluster, checked by this host's clock, says about that clock. */
export function clockAgainst(cert: X509Certificate, whose: string, nowMs = Date.now()): { problem: ClockProblem; evidence: string } | undefined {
  const from = cert.validFromDate.getTime()
  const to = cert.validToDate.getTime()
  if (nowMs < from) return { problem: 'behind', evidence: `${whose} is valid from ${isoTime(from)}` }
  if (nowMs > to) return { problem: 'ahead', evidence: `${whose} expired at ${isoTime(to)}` }
  return undefined
}

/** The clock problem a TLS verification error names, if it is one of time. */
export function clockProblemOfError(error: unknown): ClockProblem | undefined {
  const { code, cause } = (error ?? {}) as { code?: string; cause?: { code?: string } }
  const name = code ?? cause?.code
  if (name === 'CERT_NOT_YET_VALID') return 'behind'
  if (name === 'CERT_HAS_EXPIRED') return 'ahead'
  return undefined
}

/**
 * The certificate `server` (a proxy's web port or the auth server) presents, judged by this
 * host's clock against the CAs it trusts. Undefined when it cannot be reached or looks right.
 */
export async function probeServerClock(server: string, caPems: string[], timeoutMs = 10_000): Promise<{ problem: ClockProblem; evidence: string } | undefined> {
  const seen = await probeServerCertificate(server, caPems, timeoutMs)
  if (!seen || (seen.code !== 'CERT_NOT_YET_VALID' && seen.code !== 'CERT_HAS_EXPIRED')) return undefined
  return clockAgainst(seen.cert, `the certificate ${server} presents`)
}

/** The node's clock status from the evidence at hand (its own certificate first). */
export function clockStatus(own: X509Certificate, seen: { problem: ClockProblem; evidence: string } | undefined, nowMs = Date.now()): ClockStatus {
  const judged = clockAgainst(own, "this node's certificate", nowMs)
  // An expired certificate of its own may really have expired: only a cluster's server certificate then says the clock is ahead.
  const found = judged?.problem === 'behind' ? judged : (seen ?? undefined)
  return { now: isoTime(nowMs), problem: found?.problem ?? null, evidence: found?.evidence ?? null }
}
