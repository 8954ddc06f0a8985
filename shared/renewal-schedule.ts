// Renewing a certificate on a timer, by whoever holds it: nodes and proxies their host
// certificates, the auth server its own TLS certificate and warrenctl's identity. The timer
// fires once two thirds of the certificate's lifetime has passed (renewal-window.ts); a
// failed renewal is tried again with backoff and logged at WARN with the time left; a
// renewed certificate arms the timer for its own window. A CA rotation asks for a renewal
// at once (renewNow). One renewal runs at a time.

import type { X509Certificate } from 'node:crypto'
import { Backoff } from './backoff.ts'
import { formatDuration, isoTime } from './duration.ts'
import type { Logger } from './log.ts'
import { renewalDueAt } from './renewal-window.ts'

/** setTimeout's longest delay (about 24.8 days): longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Retries after a failure wait up to 1 s, then twice as long each time, up to 5 minutes:
 * the renewal window of a 30-day certificate (10 days) leaves room for thousands of tries,
 * and a fleet whose auth server was away does not come back all in one second.
 */
export const RETRY_BASE_MS = 1000
export const RETRY_CAP_MS = 5 * 60_000

/** A retry never waits longer than this share of the certificate's lifetime, so that short lifetimes get several tries. */
const RETRY_SHARE_OF_LIFETIME = 1 / 10

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

const realTimers: Timers = {
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
   * When `cert` is due (epoch ms): by default in its renewal window. A holder that follows
   * CA rotations also makes it due at once when the signing CA did not issue it; this is
   * asked again after every renewal, so a rotation that began during one is not missed.
   */
  dueAt?: (cert: X509Certificate) => number
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

export class RenewalSchedule {
  private readonly options: RenewalScheduleOptions
  private readonly clock: () => number
  private readonly timers: Timers
  private readonly backoff: Backoff
  private timer?: unknown
  /** Epoch ms of the next try. */
  private nextAt = 0
  private running = false
  /** The next try is a retry after a failure: its backoff is kept. */
  private retrying = false
  private stopped = true
  /** Renewals that succeeded (for tests). */
  renewals = 0

  constructor(options: RenewalScheduleOptions) {
    this.options = options
    this.clock = options.clock ?? Date.now
    this.timers = options.timers ?? realTimers
    this.backoff = new Backoff({ baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS, random: options.random })
  }

  /** Arms the timer for the certificate's renewal window (at once when it is already due). */
  start(): void {
    this.stopped = false
    this.retrying = false
    this.nextAt = this.dueAt()
    this.arm()
  }

  private dueAt(): number {
    const cert = this.options.certificate()
    return this.options.dueAt ? this.options.dueAt(cert) : renewalDueAt(cert)
  }

  /** The wait before another try: growing with each failure, and never a large part of the certificate's lifetime. */
  private retryDelay(cert: X509Certificate): number {
    const lifetime = cert.validToDate.getTime() - cert.validFromDate.getTime()
    return Math.min(this.backoff.next(), Math.max(RETRY_BASE_MS, Math.floor(lifetime * RETRY_SHARE_OF_LIFETIME)))
  }

  /**
   * Renews as soon as possible (a CA rotation made the certificate due), unless a renewal is
   * under way (the next one is then timed by dueAt) or failures are being retried with backoff.
   */
  renewNow(): void {
    if (this.stopped || this.running || this.retrying) return
    this.nextAt = this.clock()
    this.arm()
  }

  stop(): void {
    this.stopped = true
    this.timers.clear(this.timer)
    this.timer = undefined
  }

  /** When the next try is due (epoch ms), for tests and logs. */
  get next(): number {
    return this.nextAt
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
    const { log, what } = this.options
    try {
      await this.options.renew()
      this.renewals++
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
      const delay = error instanceof RetryLater ? error.retryInMs : this.retryDelay(cert)
      this.nextAt = this.clock() + delay
      this.retrying = true
      if (!this.stopped)
        log.warn(`renewing ${what} failed: ${(error as Error).message}; trying again in ${formatDuration(delay)}`, {
          what,
          error: (error as Error).message,
          ...timeLeftFields(cert, this.clock()),
          retry_in: formatDuration(delay),
        })
    } finally {
      this.running = false
    }
    if (!this.stopped) this.arm()
  }
}
