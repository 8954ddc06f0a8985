// Whether the proxy still trusts the node at the other end of each open tunnel. A tunnel is
// accepted by its node's certificate; it stays open only while that certificate, or one
// the node renewed since for the same key, is valid and from a host CA the cluster trusts.
// Tunnels are judged again when the trusted CAs change (a rotation dropped a CA: nodes
// that did not follow it are cut), when their last certificate expires (timed again when the
// wall clock is set), and when a node is removed or locked (a certificate does not help a
// host the cluster refuses).

import { X509Certificate } from 'node:crypto'
import { judgeCertificate, type Verdict } from '../shared/cert-trust.ts'
import type { Logger } from '../shared/log.ts'

/** What this module needs of a tunnel. */
export interface TrustedTunnel {
  hostId: string
  nodename: string
  /** The newest trusted certificate: the one renewals present on the node's behalf. */
  cert: X509Certificate
}

/** The certificates a tunnel's node has shown for its key, oldest first, and the timer at their expiry. */
interface Held {
  certs: X509Certificate[]
  expiry?: NodeJS.Timeout
  /** Announcements of renewed certificates this tunnel may still make, and when that was counted. */
  allowance: number
  countedAt: number
}

/** setTimeout's longest delay (about 24.8 days); host certificates live longer, so expiry timers are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Certificates kept per tunnel for its key: the one it opened with and renewals since. A
 * rotation adds one; a rollback goes back to the one before, which must still be at hand.
 */
const MAX_CERTS_PER_TUNNEL = 4

/**
 * Announcements a tunnel may make: 16 at once, then one more every 2 s. A node announces
 * once per renewal (at two thirds of a lifetime of at least 10 s) and per rotation, so a
 * tunnel that lives for years keeps taking them; each costs the proxy a signature check,
 * so a node cannot make it check certificates without end. (An announcement refused
 * leaves the tunnel on its older certificate, and the node comes back with its new one
 * when that expires.)
 */
const ANNOUNCEMENT_BURST = 16
const ANNOUNCEMENT_EVERY_MS = 2000

export interface TunnelTrustOptions<T> {
  clusterName: string
  hostCAPems: () => string[]
  /** Why a host is refused although its certificate is valid (removed, locked), or undefined. */
  refusedHost?: (hostId: string) => string | undefined
  /** Closes a tunnel that is no longer trusted. */
  close: (tunnel: T) => void
  log: Logger
  clock?: () => number
}

export class TunnelTrust<T extends TrustedTunnel> {
  private readonly options: TunnelTrustOptions<T>
  /** Every open tunnel, registered or not yet. */
  private readonly held = new Map<T, Held>()
  private readonly clock: () => number

  constructor(options: TunnelTrustOptions<T>) {
    this.options = options
    this.clock = options.clock ?? Date.now
  }

  /**
   * Whether this proxy accepts a node's certificate now: valid, from a host CA the cluster
   * trusts, a node of this cluster, and not a host the cluster removed or locked.
   */
  judge(cert: X509Certificate): Verdict {
    const verdict = judgeCertificate(cert, { clusterName: this.options.clusterName, caPems: this.options.hostCAPems(), role: 'node' }, this.clock())
    const refusal = verdict.trusted ? this.options.refusedHost?.(verdict.subject.commonName) : undefined
    return refusal ? { trusted: false, reason: refusal } : verdict
  }

  /**
   * After the removed and locked hosts changed: their tunnels are closed. Judged by host ID
   * alone (the certificates were checked when they came), so a fleet's proxies do not check
   * every certificate again for each lock.
   */
  dropRefused(): void {
    for (const tunnel of [...this.held.keys()]) {
      const refusal = this.options.refusedHost?.(tunnel.hostId)
      if (!refusal) continue
      this.options.log.warn(`tunnel from ${tunnel.nodename} closed: ${refusal}`, { host_id: tunnel.hostId, refused: true })
      this.closed(tunnel)
      this.options.close(tunnel)
    }
  }

  /** A tunnel accepted with `cert` (judged trusted by the caller just now). */
  opened(tunnel: T, cert: X509Certificate): void {
    const held: Held = { certs: [cert], allowance: ANNOUNCEMENT_BURST, countedAt: this.clock() }
    this.held.set(tunnel, held)
    this.expireWith(tunnel, held)
  }

  closed(tunnel: T): void {
    clearTimeout(this.held.get(tunnel)?.expiry)
    this.held.delete(tunnel)
  }

  /** Whether `tunnel` may carry on; closes it when none of its certificates is trusted any more. */
  recheck(tunnel: T): boolean {
    const held = this.held.get(tunnel)
    if (!held) return false
    const verdicts = held.certs.map((cert) => this.judge(cert))
    held.certs = held.certs.filter((_, i) => verdicts[i].trusted)
    const newest = held.certs.at(-1)
    if (!newest) {
      const refusal = verdicts.at(-1)
      this.options.log.warn(`tunnel from ${tunnel.nodename} closed: ${refusal && !refusal.trusted ? refusal.reason : 'no trusted certificate'}`, { host_id: tunnel.hostId })
      this.closed(tunnel)
      this.options.close(tunnel)
      return false
    }
    tunnel.cert = newest
    this.expireWith(tunnel, held)
    return true
  }

  /**
   * The wall clock was set (shared/clock-watch.ts): every tunnel's expiry timer is armed
   * again by the clock as it reads now, so that a tunnel whose certificates expired in the
   * step is judged (and closed) at once, and one whose clock went back is not judged early.
   */
  clockStepped(): void {
    for (const [tunnel, held] of this.held) this.expireWith(tunnel, held)
  }

  /** After the trusted host CAs changed: every tunnel is judged again. */
  recheckAll(): void {
    for (const tunnel of [...this.held.keys()]) this.recheck(tunnel)
  }

  /**
   * A node tells each proxy the certificate it renewed (through one of them), in its
   * renewal window or during a rotation, so that none closes its tunnel when the old
   * certificate expires or its CA is dropped. Taken only for the key the node proved it
   * holds when the tunnel opened, and for the same host.
   */
  renewed(tunnel: T, pem: unknown): boolean {
    const held = this.held.get(tunnel)
    if (!held || !this.spendAnnouncement(held)) return false
    const cert = typeof pem === 'string' ? parseCertificate(pem) : undefined
    const verdict = cert && this.judge(cert)
    if (!cert || !verdict?.trusted || verdict.subject.commonName !== tunnel.hostId || !cert.publicKey.equals(tunnel.cert.publicKey)) {
      this.options.log.warn(
        `tunnel from ${tunnel.nodename}: its renewed certificate is not taken (${verdict && !verdict.trusted ? verdict.reason : "not a certificate of this node's key"})`,
        { host_id: tunnel.hostId },
      )
      return false
    }
    held.certs = [...held.certs, cert].slice(-MAX_CERTS_PER_TUNNEL)
    return this.recheck(tunnel)
  }

  private spendAnnouncement(held: Held): boolean {
    const now = this.clock()
    held.allowance = Math.min(ANNOUNCEMENT_BURST, held.allowance + (now - held.countedAt) / ANNOUNCEMENT_EVERY_MS)
    held.countedAt = now
    if (held.allowance < 1) return false
    held.allowance -= 1
    return true
  }

  /** Judges the tunnel again just after the last of its certificates expires. */
  private expireWith(tunnel: T, held: Held): void {
    clearTimeout(held.expiry)
    const lastExpiry = Math.max(...held.certs.map((cert) => cert.validToDate.getTime()))
    held.expiry = setTimeout(() => this.recheck(tunnel), Math.min(MAX_TIMER_MS, Math.max(1, lastExpiry + 1 - this.clock())))
    held.expiry.unref()
  }
}

function parseCertificate(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem)
  } catch {
    return undefined
  }
}
