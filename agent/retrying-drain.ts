// The loop both of the node's senders to the auth server run (audit events, session
// recordings): send what waits, one pass at a time; when a pass cannot finish (no way to
// the auth server, or a failure), try again after a backoff with jitter, so that a
// restarted auth server or proxy meets a trickle from the fleet rather than all of it at once.

import { Backoff, type BackoffOptions } from '../shared/backoff.ts'

/** One pass: sends what waits now; resolves false when the rest must wait for a retry. */
export type DrainPass = () => Promise<boolean>

export class RetryingDrain {
  readonly #pass: DrainPass
  readonly #backoff: Backoff
  #running = false
  /** Something new arrived during a pass: one more pass when it ends. */
  #again = false
  #stopped = false
  #timer?: NodeJS.Timeout

  constructor(pass: DrainPass, backoff: BackoffOptions) {
    this.#pass = pass
    this.#backoff = new Backoff(backoff)
  }

  /** Whether a retry waits for its backoff. */
  get retryPending(): boolean {
    return this.#timer !== undefined
  }

  get stopped(): boolean {
    return this.#stopped
  }

  /** Runs a pass now (something new waits, or a way to the auth server opened). */
  kick(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#running) this.#again = true
    else void this.#run()
  }

  /** Something was delivered: the next failure starts again from the shortest backoff. */
  delivered(): void {
    this.#backoff.reset()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
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
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.#run()
    }, this.#backoff.next())
  }
}
