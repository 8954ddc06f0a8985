// A host's own certificates (a node's or a proxy's) kept valid: renewed once two thirds of
// their lifetime has passed and at once when the host CA that signs changes (a rotation),
// always with the host's current identity. Certificates that expired anyway (the host was
// offline for longer than their lifetime) can no longer renew, so they are recovered with
// the host's keys (recover.ts). How a renewal travels differs: the holder's `renew` says.
// Whatever comes back is judged before it is put in place (renewed-certificates.ts): one
// refused is logged at ERROR (field `certificates_refused`, and `ssh_cert_refused` when the
// SSH host certificate was what failed), the host keeps what it holds, and tries again as
// after any failed renewal.

import { X509Certificate } from 'node:crypto'
import { serverWaitMs } from './backoff.ts'
import { validNow } from './cert-subject.ts'
import { formatDuration } from './duration.ts'
import type { NodeIdentity } from './identity-store.ts'
import type { Logger } from './log.ts'
import type { RenewedCertificates } from './protocol/hosts.ts'
import { RenewalSchedule, type RenewalScheduleOptions, type RenewalState, RetryLater } from './renewal-schedule.ts'
import { certificateUsable, renewalNeeded } from './renewal-window.ts'
import { CertificatesRefused, checkRenewed, SshCertificateRefused } from './renewed-certificates.ts'

/**
 * Past the recovery window nothing changes until an admin acts (a new token, or a longer
 * `auth_service.recovery_window`): the host asks again hourly, and logs what would re-admit it.
 */
export const PAST_WINDOW_RETRY_MS = 3_600_000

export interface HostRenewalOptions {
  /** What is renewed, for the log ("this node's certificates"). */
  what: string
  identity: () => NodeIdentity
  /** Renewed certificates for `identity`, which is still usable; throws when the renewal failed. */
  renew: (identity: NodeIdentity) => Promise<RenewedCertificates>
  /** Puts new certificates in place everywhere the host uses them. */
  apply: (renewed: RenewedCertificates, how: 'renewed' | 'recovered') => void
  /**
   * `apply` judges the certificates itself (acceptRenewed, throwing CertificatesRefused), as
   * a node's does; otherwise they are judged (checkRenewed) before `apply` is called.
   */
  applyChecks?: boolean
  /** The certificate can no longer be used (it expired, or its CA was dropped): recovery follows. */
  unusable?: () => void
  log: Logger
  /** For tests: the schedule's clock, timers and randomness. */
  schedule?: Pick<RenewalScheduleOptions, 'clock' | 'timers' | 'random'>
}

export class HostRenewal {
  private readonly options: HostRenewalOptions
  private readonly schedule: RenewalSchedule
  /** The host CAs trusted when the last try started: a failing renewal is asked again at once only when they changed. */
  private triedWithCAs?: string
  /**
   * How far the host's clock runs ahead of the auth server's, as a recovery refused for a
   * certificate still valid by the server's clock showed: the certificate is judged, and its
   * renewal timed, by the host's clock less this, which is the server's (to the second).
   */
  private aheadMs = 0
  private readonly clock: () => number

  constructor(options: HostRenewalOptions) {
    this.options = options
    const base = options.schedule?.clock ?? Date.now
    // The host's clock, less how far the auth server found it ahead (a refused recovery).
    const clock = () => base() - this.aheadMs
    this.clock = clock
    this.schedule = new RenewalSchedule({
      ...options.schedule,
      clock,
      what: options.what,
      certificate: () => new X509Certificate(options.identity().tlsCertPem),
      renew: () => this.renewOrRecover(),
      // Due in the renewal window, and at once when the CA that signs now did not issue it.
      dueNow: (cert) => renewalNeeded(cert, options.identity().hostCAPems[0], clock()),
      // One that can no longer be used is recovered, and its retries back off fully.
      usable: () => certificateUsable(options.identity(), clock()),
      log: options.log,
    })
  }

  start(): void {
    this.schedule.start()
  }

  /** Where the schedule stands: the next try, and the failures since the last success. */
  get state(): RenewalState {
    return this.schedule.state
  }

  /**
   * The trusted CAs changed: renews at once, or after a random wait of up to `spreadMs` (a
   * proxy spreads the renewals of the nodes it tells of a rotation), if the CA that signs now
   * did not issue the certificate. While tries are failing, only if the CAs differ from those
   * the last try trusted (a bridge to the CA the server presents, say): the same set heard
   * again (every proxy relays it) changes nothing, and the backoff stands.
   */
  trustChanged(spreadMs = 0): void {
    const identity = this.options.identity()
    if (!renewalNeeded(new X509Certificate(identity.tlsCertPem), identity.hostCAPems[0], this.clock())) return
    if (this.schedule.failing && this.triedWithCAs === identity.hostCAPems.join('\n')) return
    this.schedule.renewNow(spreadMs)
  }

  /** The wall clock was set (by `byMs`): the renewal is timed again by the clock as it reads now (RenewalSchedule.clockStepped). */
  clockStepped(byMs: number): void {
    // Once the clock was found ahead, a step moves it as far from the auth server's (a step
    // back, NTP correcting it, takes back as much); otherwise nothing is known of that.
    const ahead = this.aheadMs > 0 ? Math.max(0, this.aheadMs + byMs) : 0
    const corrected = byMs - (ahead - this.aheadMs)
    this.aheadMs = ahead
    this.schedule.clockStepped(corrected)
  }

  /** How far the host's clock was found ahead of the auth server's (0 unless a refused recovery showed it). */
  get clockAheadMs(): number {
    return this.aheadMs
  }

  /** Epoch ms by the clock the certificate is judged by: the host's, less how far it was found ahead of the auth server's. */
  now(): number {
    return this.clock()
  }

  stop(): void {
    this.schedule.stop()
  }

  /**
   * Renews now, or recovers a certificate that can no longer be used, outside the schedule
   * (a proxy whose auth server refuses it before it serves). Throws when that failed.
   */
  renewOrRecoverNow(): Promise<void> {
    return this.renewOrRecover()
  }

  private async renewOrRecover(): Promise<void> {
    const identity = this.options.identity()
    this.triedWithCAs = identity.hostCAPems.join('\n')
    if (certificateUsable(identity, this.clock())) {
      this.accept(await this.options.renew(identity).catch(throwWithServerWait), 'renewed')
      return
    }
    this.options.unusable?.()
    // Loaded only when needed: a node whose certificates stay valid never holds this code.
    const { PastRecoveryWindow, recoverCertificates, StillValidByServer } = await import('./recover.ts')
    let recovered: RenewedCertificates
    try {
      recovered = await recoverCertificates(identity)
    } catch (error) {
      if (error instanceof StillValidByServer) {
        // Only this host's clock says the certificate expired: the auth server, whose clock
        // decides, renews it as any other (and refuses it as any other), so the host asks so.
        this.foundAhead(identity, error)
        this.accept(await this.options.renew(identity).catch(throwWithServerWait), 'renewed')
        return
      }
      if (!(error instanceof PastRecoveryWindow)) throwWithServerWait(error)
      this.options.log.error(error.message, { host_id: identity.hostId, readmit: error.readmit })
      throw new RetryLater(error.message, PAST_WINDOW_RETRY_MS)
    }
    this.accept(recovered, 'recovered')
  }

  /** The auth server found the certificate still valid: says by how much the clock runs ahead, and judges by the server's clock from now on. */
  private foundAhead(identity: NodeIdentity, refusal: { message: string; clockAheadMs?: number }): void {
    const measured = refusal.clockAheadMs
    if (validNow(new X509Certificate(identity.tlsCertPem), this.clock())) {
      // Not expired by this clock either: it was the CAs this host trusts that made it look unusable.
      this.options.log.warn(`the auth server holds this host's certificate valid, from a CA it signs with: it renews as usual instead of recovering (${refusal.message})`, {
        host_id: identity.hostId,
      })
      return
    }
    const fields = { host_id: identity.hostId, ...(measured === undefined ? {} : { clock_ahead_ms: measured }) }
    this.options.log.warn(
      measured !== undefined && measured < 0
        ? `this host's clock runs behind the auth server's by ${formatDuration(-measured)}: the certificate it holds is outside its dates by this host's clock only, so it renews as usual instead of recovering (${refusal.message}); set this host's clock right (NTP)`
        : `this host's clock runs ahead of the auth server's${measured === undefined ? '' : ` by ${formatDuration(measured)}`}: the certificate it holds has expired by this host's clock only, so it renews as usual instead of recovering (${refusal.message}); set this host's clock right (NTP)`,
      fields,
    )
    if (measured === undefined || measured <= 0) return
    const more = measured - this.aheadMs
    this.aheadMs = measured
    this.schedule.clockStepped(-more)
  }

  /** Puts `renewed` in place once judged; a refusal is logged and thrown, so that the schedule tries again. */
  private accept(renewed: RenewedCertificates, how: 'renewed' | 'recovered'): void {
    const identity = this.options.identity()
    try {
      if (!this.options.applyChecks) checkRenewed(identity, renewed)
      this.options.apply(renewed, how)
    } catch (error) {
      if (error instanceof CertificatesRefused) {
        this.options.log.error(`refused the ${how} certificates, keeping those held: ${error.message}`, {
          host_id: identity.hostId,
          certificates_refused: error.message,
          ...(error instanceof SshCertificateRefused ? { ssh_cert_refused: error.message } : {}),
        })
      }
      throw error
    }
  }
}

/** A refusal that names a time to wait (a 429's Retry-After, at most MAX_SERVER_WAIT_MS) is tried again no sooner. */
function throwWithServerWait(error: unknown): never {
  const wait = serverWaitMs(error)
  throw wait === undefined ? error : new RetryLater((error as Error).message, wait)
}
