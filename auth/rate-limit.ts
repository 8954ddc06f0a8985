// Token buckets per client address for failed joins: a guesser gets `burst` tries, then
// `perMinute` more per minute. Successful joins cost nothing, so a fleet joining at once
// through one NAT address is never throttled by its own valid tokens.

export interface RateLimitOptions {
  burst: number
  perMinute: number
  clock?: () => number
}

interface Bucket {
  tokens: number
  updated: number
}

export class FailureRateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly burst: number
  private readonly refillPerMs: number
  private readonly clock: () => number

  constructor(options: RateLimitOptions) {
    this.burst = options.burst
    this.refillPerMs = options.perMinute / 60_000
    this.clock = options.clock ?? Date.now
  }

  /** Milliseconds until `address` may try again; 0 when it may try now. */
  retryAfterMs(address: string): number {
    const bucket = this.refill(address)
    if (!bucket || bucket.tokens >= 1) return 0
    return Math.ceil((1 - bucket.tokens) / this.refillPerMs)
  }

  recordFailure(address: string): void {
    const bucket = this.refill(address) ?? { tokens: this.burst, updated: this.clock() }
    bucket.tokens = Math.max(0, bucket.tokens - 1)
    this.buckets.set(address, bucket)
    if (this.buckets.size > 10_000) this.prune()
  }

  private refill(address: string): Bucket | undefined {
    const bucket = this.buckets.get(address)
    if (!bucket) return undefined
    const now = this.clock()
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.updated) * this.refillPerMs)
    bucket.updated = now
    return bucket
  }

  /** Forgets addresses whose buckets have refilled, so memory stays bounded. */
  private prune(): void {
    for (const address of this.buckets.keys()) {
      const bucket = this.refill(address)
      if (bucket && bucket.tokens >= this.burst) this.buckets.delete(address)
    }
  }
}
