// How often one host may register a tunnel here. A registration (the agent's hello) costs
// the proxy a full TLS handshake before it, then its bookkeeping, the replaced tunnel's
// teardown and the events to whoever watches; an agent says it once per tunnel, and again
// only after that tunnel ended. A device in a loop (a modified agent, or a stolen one,
// saying hello and closing over and over) would otherwise keep a core busy with a valid
// certificate alone. Tunnels that never say hello are bounded apart (MAX_PENDING_PER_HOST).

/**
 * Registrations a host may make at once, then one more every HELLO_EVERY_MS. A node holds
 * one tunnel here and replaces it only when it ended (a network change, this proxy or the
 * node restarting), so a few at once cover a flapping link; past them the agent is told to
 * wait, and backs off.
 */
export const HELLO_BURST = 5
export const HELLO_EVERY_MS = 1000

/** A host's refusals are logged at most this often: a looping device would otherwise fill the log too. */
const REFUSAL_LOG_MS = 60_000

/** Buckets kept before the full ones are forgotten; the threshold doubles while most are in use. */
const PRUNE_THRESHOLD = 10_000

interface Bucket {
  tokens: number
  updated: number
  /** When a refusal of this host was last logged. */
  loggedAt?: number
}

/** A registration refused: when one is free again, and whether to log this refusal. */
export interface HelloRefusal {
  waitMs: number
  log: boolean
}

/** A token bucket per host ID. */
export class HelloRate {
  private readonly buckets = new Map<string, Bucket>()
  private readonly clock: () => number
  private pruneAt = PRUNE_THRESHOLD

  constructor(clock: () => number = Date.now) {
    this.clock = clock
  }

  /** Takes one registration of `hostId`'s: undefined when granted, else the refusal (nothing taken). */
  take(hostId: string): HelloRefusal | undefined {
    const bucket = this.refill(hostId) ?? { tokens: HELLO_BURST, updated: this.clock() }
    if (bucket.tokens < 1) {
      const log = bucket.loggedAt === undefined || bucket.updated - bucket.loggedAt >= REFUSAL_LOG_MS
      if (log) bucket.loggedAt = bucket.updated
      return { waitMs: Math.ceil((1 - bucket.tokens) * HELLO_EVERY_MS), log }
    }
    bucket.tokens -= 1
    this.buckets.set(hostId, bucket)
    if (this.buckets.size > this.pruneAt) this.prune()
    return undefined
  }

  private refill(hostId: string): Bucket | undefined {
    const bucket = this.buckets.get(hostId)
    if (!bucket) return undefined
    const now = this.clock()
    bucket.tokens = Math.min(HELLO_BURST, bucket.tokens + Math.max(0, now - bucket.updated) / HELLO_EVERY_MS)
    bucket.updated = now
    return bucket
  }

  /** Forgets hosts whose buckets have refilled, so that memory follows the hosts reconnecting now. */
  private prune(): void {
    for (const hostId of this.buckets.keys()) {
      const bucket = this.refill(hostId)
      if (bucket && bucket.tokens >= HELLO_BURST) this.buckets.delete(hostId)
    }
    this.pruneAt = Math.max(PRUNE_THRESHOLD, this.buckets.size * 2)
  }
}
