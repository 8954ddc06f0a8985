// Token buckets per client address for joins: a guesser gets `burst` tries, then
// `perMinute` more per minute. A try is taken when the request arrives, before its body
// (and the token in it) is read, and given back when the join succeeds: requests in flight
// from one address draw on the same bucket, so slow or concurrent bodies buy no extra
// guesses, while a fleet joining through one NAT address pays nothing for valid tokens.

import { isIPv6 } from 'node:net'

export interface RateLimitOptions {
  burst: number
  perMinute: number
  clock?: () => number
}

interface Bucket {
  tokens: number
  updated: number
}

/** An address that used up its tries: refused before its request is read. */
export class TooManyAttempts extends Error {
  /** Whole seconds until a try is free again. */
  readonly retryAfterS: number
  constructor(address: string, waitMs: number, what = 'join') {
    const seconds = Math.ceil(waitMs / 1000)
    // Tries are taken as requests arrive: concurrent ones from one address (a fleet behind
    // one NAT address) count until they succeed, not only the ones that failed.
    super(`too many ${what} attempts from ${address} (failed or still under way); try again in ${seconds}s`)
    this.retryAfterS = seconds
  }
}

/** Buckets kept before the full ones are forgotten; the threshold doubles while most are in use. */
const PRUNE_THRESHOLD = 10_000

export class FailureRateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly burst: number
  private readonly refillPerMs: number
  private readonly clock: () => number
  private pruneAt = PRUNE_THRESHOLD

  constructor(options: RateLimitOptions) {
    this.burst = options.burst
    this.refillPerMs = options.perMinute / 60_000
    this.clock = options.clock ?? Date.now
  }

  /**
   * Takes one try from `address`'s bucket. Returns 0 when it was granted, else the
   * milliseconds until one is free (nothing was taken).
   */
  reserve(address: string): number {
    const key = bucketKey(address)
    const bucket = this.refill(key) ?? { tokens: this.burst, updated: this.clock() }
    if (bucket.tokens < 1) return Math.ceil((1 - bucket.tokens) / this.refillPerMs)
    bucket.tokens -= 1
    this.buckets.set(key, bucket)
    if (this.buckets.size > this.pruneAt) this.prune()
    return 0
  }

  /** Gives back the try `reserve` took, for a join that succeeded. */
  refund(address: string): void {
    const bucket = this.refill(bucketKey(address))
    if (bucket) bucket.tokens = Math.min(this.burst, bucket.tokens + 1)
  }

  private refill(key: string): Bucket | undefined {
    const bucket = this.buckets.get(key)
    if (!bucket) return undefined
    const now = this.clock()
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.updated) * this.refillPerMs)
    bucket.updated = now
    return bucket
  }

  /**
   * Forgets addresses whose buckets have refilled, so memory stays bounded; when most are
   * still in use, the next pass waits until there are twice as many, so that a flood of
   * new addresses does not cost a pass over every bucket each.
   */
  private prune(): void {
    for (const key of this.buckets.keys()) {
      const bucket = this.refill(key)
      if (bucket && bucket.tokens >= this.burst) this.buckets.delete(key)
    }
    this.pruneAt = Math.max(PRUNE_THRESHOLD, this.buckets.size * 2)
  }
}

/**
 * The bucket an address draws on: an IPv4 address (also written IPv4-mapped, `::ffff:a.b.c.d`)
 * is its own, an IPv6 address shares its /64, which is what one subscriber is given.
 */
export function bucketKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]
  if (!isIPv6(address)) return address
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`
}

/** The eight groups of an IPv6 address, as numbers in lower-case hex without leading zeros. */
function expandIPv6(address: string): string[] {
  const [head, tail] = address.toLowerCase().split('%')[0].split('::')
  const groups = (text: string | undefined) => (text ? text.split(':') : [])
  // An embedded IPv4 tail (`::1.2.3.4`) counts as two groups; only the first four matter here.
  const left = groups(head)
  const right = groups(tail)
  const missing = 8 - left.length - right.length - right.filter((g) => g.includes('.')).length
  const all = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, missing)).fill('0'), ...right]
  return all.map((group) => (group.includes('.') ? group : parseInt(group, 16).toString(16)))
}
