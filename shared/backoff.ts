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

/**
 * The longest wait an answer can impose: a Retry-After from a confused or hostile server
 * (or a proxy) must not silence a node or a proxy for hours.
 */
export const MAX_SERVER_WAIT_MS = 10 * 60_000

/**
 * The wait the auth server asked for with a refusal (ApiError's `retryAfterS`, from its
 * Retry-After), in ms and at most MAX_SERVER_WAIT_MS; undefined when it asked none or the
 * value is not a number of seconds, and the backoff alone decides.
 */
export function serverWaitMs(error: unknown): number | undefined {
  const seconds = (error as { retryAfterS?: unknown } | null)?.retryAfterS
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return undefined
  return Math.min(seconds * 1000, MAX_SERVER_WAIT_MS)
}
