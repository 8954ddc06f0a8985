// The loop both of the node's senders to the auth server run (audit events, session
// recordings): send what waits, one pass at a time; when a pass cannot finish (no way to
// the auth server, or a failure), try again after a backoff with jitter, so that a
// restarted auth server or proxy meets a trickle from the fleet rather than all of it at once.
// When the auth server said how long to wait (a 429's Retry-After: the node is over its
// budget), nothing is sent before that, however often a pass is asked for.

import { Backoff, type BackoffOptions, MAX_SERVER_WAIT_MS } from '../shared/backoff.ts'

/** One pass: sends what waits now; resolves false when the rest must wait for a retry. */
export type DrainPass = () => Promise<boolean>

/** Starts `run` after `ms`; returns what cancels it. Injected by tests, with the clock. */
export type SetTimer = (run: () => void, ms: number) => () => void

export interface RetryingDrainOptions extends BackoffOptions {
  clock?: () => number
  setTimer?: SetTimer
}

const realTimer: SetTimer = (run, ms) => {
  const timer = setTimeout(run, ms)
  return () => clearTimeout(timer)
}

export class RetryingDrain {
  readonly #pass: DrainPass
  readonly #backoff: Backoff
  readonly #clock: () => number
  readonly #setTimer: SetTimer
  #running = false
  /** Something new arrived during a pass: one more pass when it ends. */
  #again = false
  #stopped = false
  #cancelTimer?: () => void
  /** No pass before this time (the clock's): the auth server asked to wait. */
  #notBefore = 0

  constructor(pass: DrainPass, options: RetryingDrainOptions) {
    this.#pass = pass
    this.#backoff = new Backoff(options)
    this.#clock = options.clock ?? Date.now
    this.#setTimer = options.setTimer ?? realTimer
  }

  /** Whether a retry waits for its backoff. */
  get retryPending(): boolean {
    return this.#cancelTimer !== undefined
  }

  get stopped(): boolean {
    return this.#stopped
  }

  /** Runs a pass now (something new waits, or a way to the auth server opened), unless the auth server asked to wait: then when the wait ends. */
  kick(): void {
    if (this.#clock() < this.#notBefore) {
      if (!this.#running && !this.retryPending) this.#schedule(this.#notBefore - this.#clock())
      return
    }
    this.#cancel()
    if (this.#running) this.#again = true
    else void this.#run()
  }

  /** Something was delivered: the next failure starts again from the shortest backoff. */
  delivered(): void {
    this.#backoff.reset()
  }

  /** The auth server refused with a time to wait (see serverWaitMs): the next pass comes no sooner. */
  waitAtLeast(ms: number): void {
    this.#notBefore = Math.max(this.#notBefore, this.#clock() + Math.min(ms, MAX_SERVER_WAIT_MS))
  }

  stop(): void {
    this.#stopped = true
    this.#cancel()
  }

  async #run(): Promise<void> {
    if (this.#running || this.#stopped) return
    this.#running = true
    try {
      do {
        this.#again = false
        if (!(await this.#pass())) return this.#retryLater()
      } while (this.#again && !this.#stopped)
    } finally {
      this.#running = false
    }
  }

  #retryLater(): void {
    if (this.#stopped) return
    this.#schedule(Math.max(this.#backoff.next(), this.#notBefore - this.#clock()))
  }

  #schedule(ms: number): void {
    this.#cancel()
    this.#cancelTimer = this.#setTimer(() => {
      this.#cancelTimer = undefined
      // A timer may fire a little early by the wall clock: the auth server's wait is kept whole.
      if (this.#clock() < this.#notBefore) this.#schedule(this.#notBefore - this.#clock())
      else void this.#run()
    }, ms)
  }

  #cancel(): void {
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
  }
}
