// Renewing a certificate on a timer, by whoever holds it: nodes and proxies their host
// certificates, the auth server its own TLS certificate and warrenctl's identity. The timer
// fires once two thirds of the certificate's lifetime has passed (renewal-window.ts), and a
// random share of up to RENEWAL_SPREAD_SHARE of the lifetime more, drawn anew for each
// certificate: hosts that renewed together (after a CA rotation, say) drift apart instead
// of renewing in the same second each lifetime again. Every failed renewal (or recovery) is
// tried again with exponential backoff and full jitter, from 1 s up to RETRY_CAP_MS, and
// only a success starts it over: a failure the host can do nothing about (a server it
// cannot verify, one that is down) costs the cluster one try every few minutes per host,
// not one a second. A RetryLater names its own wait. The failure is logged at WARN when it
// starts, when its error changes and at most once a minute while it repeats (with how many
// failures there were), the others at DEBUG. A renewed certificate arms the timer for its
// own window. Something that can make the renewal succeed (a CA rotation, trust bridged to
// a new CA) asks for a try at once, or within a spread it names (renewNow), which also cuts
// a retry's wait short. One renewal runs at a time. Timers run on the monotonic clock while
// the window is a time of the wall clock: the holder's clock watch (shared/clock-watch.ts)
// tells the schedule when the wall clock was set (clockStepped), and it is timed again.

import type { X509Certificate } from 'node:crypto'
import { Backoff } from './backoff.ts'
import { formatDuration, isoTime } from './duration.ts'
import type { Logger } from './log.ts'
import { renewalDueAt } from './renewal-window.ts'

/**
 * The renewal comes this share of the certificate's lifetime at most after its window opens
 * (a random share, drawn for each certificate): 1.5 days of the 10-day window of a 30-day
 * certificate. Only later: the auth server renews none before its window.
 */
export const RENEWAL_SPREAD_SHARE = 1 / 20

/** setTimeout's longest delay (about 24.8 days): longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Retries after a failure wait up to 1 s, then twice as long each time, up to 5 minutes:
 * the renewal window of a 30-day certificate (10 days) leaves room for thousands of tries,
 * and a fleet whose auth server was away does not come back all in one second.
 */
export const RETRY_BASE_MS = 1000
export const RETRY_CAP_MS = 5 * 60_000

/**
 * A retry never waits longer than this share of the certificate's lifetime while it can still
 * be renewed, so that short lifetimes get several tries before they end. One that can no
 * longer be used (expired, or its CA dropped) has no window left to share out: its recovery
 * backs off up to RETRY_CAP_MS like any other failure.
 */
const RETRY_SHARE_OF_LIFETIME = 1 / 10

/** A failure that repeats with the same error is logged at WARN at most this often (at DEBUG otherwise). */
export const REPEATED_FAILURE_LOG_MS = 60_000

/**
 * A try asked for while failures are retried (renewNow) comes no sooner than this after the
 * last one: whatever asks cannot make the host try more than once a second.
 */
export const NUDGE_GAP_MS = RETRY_BASE_MS

/** A failure after which trying again makes sense only later (a refusal that will not change soon). */
export class RetryLater extends Error {
  readonly retryInMs: number
  constructor(message: string, retryInMs: number) {
    super(message)
    this.retryInMs = retryInMs
  }
}

export interface Timers {
  set(callback: () => void, ms: number): unknown
  clear(handle: unknown): void
}

/** setTimeout, unref'd: a timer of ours never keeps a process alive. */
export const realTimers: Timers = {
  set: (callback, ms) => setTimeout(callback, ms).unref(),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

export interface RenewalScheduleOptions {
  /** What is renewed, for the log ("this node's certificate"). */
  what: string
  /** The certificate in use now. */
  certificate: () => X509Certificate
  /** Renews it, so that certificate() then returns the new one; throws when it failed. */
  renew: () => Promise<void> | void
  /**
   * Whether `cert` is due now whatever its age: a holder that follows CA rotations says so
   * when the signing CA did not issue it. Asked again after every renewal, so that a rotation
   * that began during one is not missed. Otherwise it is due in its renewal window.
   */
  dueNow?: (cert: X509Certificate) => boolean
  /** Whether `cert` can still be used to renew (by default: it has not expired by `clock`). */
  usable?: (cert: X509Certificate) => boolean
  log: Logger
  clock?: () => number
  timers?: Timers
  random?: () => number
}

/** The log fields that say how long `cert` has left. */
export function timeLeftFields(cert: X509Certificate, nowMs = Date.now()): { cert_expires: string; time_left: string } {
  const expires = cert.validToDate.getTime()
  return { cert_expires: isoTime(expires), time_left: formatDuration(expires - nowMs) }
}

/** Where a schedule stands, for the status and tests. */
export interface RenewalState {
  /** Failures since the last success. */
  failures: number
  /** The error of the last failure, while failures last. */
  lastError?: string
  /** Epoch ms of the next try. */
  nextAt: number
}

export class RenewalSchedule {
  private readonly options: RenewalScheduleOptions
  private readonly clock: () => number
  private readonly timers: Timers
  private readonly backoff: Backoff
  private readonly random: () => number
  /** The share of RENEWAL_SPREAD_SHARE by which the current certificate's renewal comes after its window opens. */
  private spread: number
  /** The next try was drawn within a spread renewNow was given: later spread asks keep it. */
  private spreadDrawn = false
  private timer?: unknown
  /** Epoch ms of the next try. */
  private nextAt = 0
  private running = false
  /** The next try is a retry after a failure: its backoff is kept. */
  private retrying = false
  /** The next try waits for a time the failure named (RetryLater): nothing brings it sooner. */
  private waitNamed = false
  /** renewNow was called while a try ran: one that fails is tried again soon. */
  private nudgedWhileRunning = false
  private stopped = true
  /** Epoch ms when the last try started. */
  private lastTryAt = 0
  private failures = 0
  private lastError?: string
  /** The last failure logged at WARN, and the failures since that were logged at DEBUG. */
  private warned?: { error: string; at: number; since: number }
  /** Renewals that succeeded (for tests). */
  renewals = 0

  constructor(options: RenewalScheduleOptions) {
    this.options = options
    this.clock = options.clock ?? Date.now
    this.timers = options.timers ?? realTimers
    this.random = options.random ?? Math.random
    this.backoff = new Backoff({ baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS, random: this.random })
    this.spread = this.random()
  }

  /** Arms the timer for the certificate's renewal window (at once when it is already due). Failures are still counted, and backed off, from before. */
  start(): void {
    this.stopped = false
    this.retrying = false
    this.waitNamed = false
    this.nextAt = this.dueAt()
    this.arm()
  }

  /** When the certificate in use is due: now, or in its renewal window, spread. */
  private dueAt(): number {
    const cert = this.options.certificate()
    if (this.options.dueNow?.(cert)) return this.clock()
    const lifetime = cert.validToDate.getTime() - cert.validFromDate.getTime()
    return renewalDueAt(cert) + Math.floor(lifetime * RENEWAL_SPREAD_SHARE * this.spread)
  }

  /** The wait before another try: growing with each failure, and never a large part of the lifetime of a certificate that can still be used. */
  private retryDelay(cert: X509Certificate): number {
    const delay = this.backoff.next()
    const usable = this.options.usable ? this.options.usable(cert) : this.clock() < cert.validToDate.getTime()
    if (!usable) return delay
    const lifetime = cert.validToDate.getTime() - cert.validFromDate.getTime()
    return Math.min(delay, Math.max(RETRY_BASE_MS, Math.floor(lifetime * RETRY_SHARE_OF_LIFETIME)))
  }

  /**
   * Renews as soon as possible: something changed that can make it succeed (a CA rotation
   * made the certificate due, trust was bridged to the CA a server presents); after a random
   * wait of up to `spreadMs` when whoever asks spreads a fleet's renewals (a proxy that
   * tells its nodes of a rotation). A wait between retries is cut short too, to NUDGE_GAP_MS
   * after the last try at the soonest, without starting the backoff over; a wait a failure
   * named (RetryLater) is kept, and so is a try that comes sooner anyway. While a renewal
   * runs, the next one is timed by dueAt if it succeeds, and comes soon if it fails.
   */
  renewNow(spreadMs = 0): void {
    if (this.stopped) return
    if (this.running) {
      this.nudgedWhileRunning = true
      return
    }
    if (this.waitNamed) return
    // One draw per try: a node told by each of the proxies it holds would otherwise renew at
    // the soonest of their draws, and the fleet as many times faster as it holds tunnels.
    if (spreadMs > 0 && this.spreadDrawn) return
    const soonest = this.retrying ? Math.max(this.clock(), this.lastTryAt + NUDGE_GAP_MS) : this.clock()
    const at = soonest + Math.floor(this.random() * spreadMs)
    if (at >= this.nextAt) return
    this.nextAt = at
    this.spreadDrawn = spreadMs > 0
    this.arm()
  }

  /**
   * The wall clock was set (by `byMs`, shared/clock-watch.ts): the renewal window is timed
   * again by the clock as it reads now, so a step forward past it renews at once and a step
   * back does not renew early; a wait between retries keeps what was left of it, whichever
   * way the clock moved. A renewal under way times the next one itself when it ends.
   */
  clockStepped(byMs: number): void {
    if (this.stopped) return
    this.lastTryAt += byMs
    if (this.warned) this.warned.at += byMs
    if (this.running) return
    this.nextAt = this.retrying ? this.nextAt + byMs : this.dueAt()
    this.arm()
  }

  stop(): void {
    this.stopped = true
    this.timers.clear(this.timer)
    this.timer = undefined
  }

  /** Whether failures are being retried (the next try is one). */
  get failing(): boolean {
    return this.retrying
  }

  get state(): RenewalState {
    return { failures: this.failures, ...(this.lastError === undefined ? {} : { lastError: this.lastError }), nextAt: this.nextAt }
  }

  private arm(): void {
    this.timers.clear(this.timer)
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, this.nextAt - this.clock()))
    this.timer = this.timers.set(() => this.fire(), wait)
  }

  private fire(): void {
    this.timer = undefined
    if (this.stopped || this.running) return
    if (this.clock() < this.nextAt) this.arm()
    else void this.run()
  }

  private async run(): Promise<void> {
    this.running = true
    this.nudgedWhileRunning = false
    this.spreadDrawn = false
    this.lastTryAt = this.clock()
    const { log, what } = this.options
    try {
      await this.options.renew()
      this.renewals++
      this.spread = this.random()
      this.waitNamed = false
      if (this.failures > 0) log.info(`renewed ${what} after ${this.failures} failed tries`, { what, renewal_failures: this.failures })
      this.failures = 0
      this.lastError = undefined
      this.warned = undefined
      const due = this.dueAt()
      // Still due (the answer came from a server that had not seen a rotation yet, say):
      // asked again after a pause, not in a loop.
      this.retrying = due <= this.clock()
      if (this.retrying) {
        this.nextAt = this.clock() + this.retryDelay(this.options.certificate())
      } else {
        this.backoff.reset()
        this.nextAt = due
      }
    } catch (error) {
      const cert = this.options.certificate()
      const message = (error as Error).message
      this.waitNamed = error instanceof RetryLater
      let delay = error instanceof RetryLater ? error.retryInMs : this.retryDelay(cert)
      // Something changed while this try ran (the CAs it trusts, say): the next may succeed.
      if (this.nudgedWhileRunning && !this.waitNamed) delay = Math.min(delay, NUDGE_GAP_MS)
      this.nextAt = this.clock() + delay
      this.retrying = true
      this.failures++
      this.lastError = message
      if (!this.stopped) this.logFailure(cert, message, delay)
    } finally {
      this.running = false
    }
    if (!this.stopped) this.arm()
  }

  /** WARN when a failure starts, when its error changes, and at most once a minute while it repeats; DEBUG otherwise. */
  private logFailure(cert: X509Certificate, error: string, delay: number): void {
    const { log, what } = this.options
    const now = this.clock()
    const warned = this.warned
    const fields = {
      what,
      error,
      renewal_failures: this.failures,
      ...timeLeftFields(cert, now),
      retry_in: formatDuration(delay),
      retry_in_ms: delay,
    }
    const message = `renewing ${what} failed: ${error}; trying again in ${formatDuration(delay)}`
    if (warned === undefined || warned.error !== error || now - warned.at >= REPEATED_FAILURE_LOG_MS) {
      // How many failures since the last WARN were logged at DEBUG alone.
      const repeated = warned !== undefined && warned.error === error ? { failures_not_logged: warned.since } : {}
      log.warn(this.failures > 1 ? `${message} (${this.failures} failures in a row)` : message, { ...fields, ...repeated })
      this.warned = { error, at: now, since: 0 }
    } else {
      warned.since++
      log.debug(message, fields)
    }
  }
}
