// Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
// [0, min(cap, base·2ⁿ)]. The randomness spreads a fleet's reconnects over the whole window,
// so a restarted server sees a trickle instead of a storm.

export interface BackoffOptions {
  baseMs: number
  capMs: number
  random?: () => number
}

export class Backoff {
  private attempt = 0
  private readonly options: BackoffOptions

  constructor(options: BackoffOptions) {
    this.options = options
  }

  /** The delay before the next attempt; each call widens the window. */
  next(): number {
    const { baseMs, capMs, random = Math.random } = this.options
    const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(this.attempt, 30))
    this.attempt++
    return Math.floor(random() * ceiling)
  }

  reset(): void {
    this.attempt = 0
  }

  get attempts(): number {
    return this.attempt
  }
}
