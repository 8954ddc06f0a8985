// Join challenges: the server nonce a joining device signs to prove it holds its keys
// (shared/join-proof.ts). Stateless to hand out: a nonce is an expiry, random bytes and an
// HMAC over both, keyed by a secret kept in the backend, so any auth server sharing the
// backend accepts a nonce that another one issued. Used once: the join that spends it
// records it (conditional on its absence) in the same transaction that registers the node.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { JoinChallenge } from '../shared/protocol/hosts.ts'
import type { Backend, Condition, Operation } from './backend/backend.ts'

/** Long enough for a slow device to sign and send; short enough that a leaked nonce is soon worthless. */
export const CHALLENGE_TTL_MS = 120_000
/**
 * How far ahead of this one the clock of the auth server that issued a nonce may be: auth
 * servers behind one load balancer each judge by their own clock, and a device refused for
 * their skew would stop for good (a refused join is not started again). A minute, as the
 * backdating of certificates allows.
 */
export const ISSUER_CLOCK_AHEAD_MS = 60_000
const SECRET_KEY = '/cluster/join-challenge-secret'
const USED_PREFIX = '/join-nonces/'
const VERSION = 'c1'

/** A nonce this cluster did not issue, or issued too long ago. */
export class ChallengeRefusal extends Error {}

export class JoinChallenges {
  private readonly secret: Buffer
  private readonly clock: () => number

  private constructor(secret: Buffer, clock: () => number) {
    this.secret = secret
    this.clock = clock
  }

  /** Loads the cluster's challenge secret, creating it on first start (two servers racing agree on one). */
  static async open(backend: Backend, clock: () => number = Date.now): Promise<JoinChallenges> {
    await backend.create(SECRET_KEY, randomBytes(32).toString('base64'))
    const item = await backend.get(SECRET_KEY)
    if (!item) throw new Error('the join challenge secret vanished while being created')
    return new JoinChallenges(Buffer.from(item.value, 'base64'), clock)
  }

  issue(): JoinChallenge {
    const expires = this.clock() + CHALLENGE_TTL_MS
    const body = `${VERSION}.${expires.toString(36)}.${randomBytes(16).toString('base64url')}`
    return { nonce: `${body}.${this.mac(body)}`, expires }
  }

  /**
   * Checks that this cluster issued `nonce` and that it has not expired; returns what the
   * join's transaction must hold and write so that the nonce is spent exactly once.
   */
  spend(nonce: string): { conditions: Condition[]; operations: Operation[] } {
    const parts = nonce.split('.')
    if (parts.length !== 4 || parts[0] !== VERSION) throw new ChallengeRefusal('the join challenge is malformed: ask for a new one')
    const body = parts.slice(0, 3).join('.')
    const expected = Buffer.from(this.mac(body))
    const given = Buffer.from(parts[3])
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new ChallengeRefusal('the join challenge was not issued by this cluster')
    const remaining = Number.parseInt(parts[1], 36) - this.clock()
    if (!(remaining > 0) || remaining > CHALLENGE_TTL_MS + ISSUER_CLOCK_AHEAD_MS) throw new ChallengeRefusal('the join challenge has expired: ask for a new one')
    const key = usedNonceKey(nonce)
    // Kept a little past the expiry, after which the nonce is refused as expired anyway.
    return { conditions: [{ key, absent: true }], operations: [{ op: 'put', key, value: '1', ttlMs: remaining + 1000 }] }
  }

  private mac(body: string): string {
    return createHmac('sha256', this.secret).update(body).digest('base64url')
  }
}

export function usedNonceKey(nonce: string): string {
  return USED_PREFIX + createHash('sha256').update(nonce).digest('hex')
}
