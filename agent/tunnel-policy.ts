// Which proxies the tunnel pool holds and when it dials. Decisions only: the pool
// (tunnel-pool.ts) tells the policy what it holds, the sets its proxies announce and how
// each round of dials went, and carries out what the policy answers.
//
// The balancer decides which proxy each dial lands on, so the pool keeps dialling until it
// holds a tunnel to every proxy the proxies announce, closes duplicates, drops proxies that
// leave the set, and backs off with full jitter so a fleet never storms a proxy.
//
// Dials go in rounds whose connections start together. A round-robin balancer gives
// connections that arrive back to back consecutive servers, so a round of as many dials
// as there are proxies reaches every proxy in the balancer's rotation unless other
// clients' connections slip in between. The first dial learns the proxy set; then a
// round is a full round while two or more proxies are missing, and a single dial when one
// is. Looking for one proxy, the dials land at random whenever other clients dial too
// (a fleet returning to a restarted proxy), and two dials of a round that both reached it
// would cost it a wasted handshake; a proxy it already holds declines a dial at once, so
// single dials find it after three on average. Declined single dials are retried at once,
// up to twice as many times in a row as there are proxies: a decline costs the proxy a
// ClientHello, and the waits below would otherwise turn the unlucky agents' geometric
// tail of dials into minutes. (Four times as many made no difference to a fleet's restart
// behind round robin: `npm run bench:mesh`.)
//
// A round that found nothing new otherwise waits a backoff window that grows from 0.5 s to
// 15 s.
//
// A tunnel the proxy refused at its hello (the host is unknown to the cluster, or registered
// tunnels too often) had opened, which no failure backoff would see: the next dial waits a
// window of its own that grows from 1 s to a minute, reset only when a tunnel ends for
// another reason.

import { Backoff, type BackoffOptions, MAX_SERVER_WAIT_MS } from '../shared/backoff.ts'
import { DEFAULTS } from '../shared/config.ts'

/** A tunnel lost while others are held is redialled after a random delay up to this. */
export const LOSS_SPREAD_MS = 5000

/**
 * By when every proxy has looked at the live set since a proxy left it: they read it every
 * second, proxies of earlier versions at each heartbeat.
 */
const PROXY_LOOK_MS = DEFAULTS.heartbeatIntervalMs

/**
 * The wait after a tunnel refused at its hello: a refusal is about the node (removed,
 * replaced, restored away, dialling too often), not the path, so dialling sooner changes
 * nothing, and what cures it (a new token, an admin) takes minutes. Capped, so that a node
 * re-admitted behind its back (a newer backup restored) returns within a minute.
 */
export const REFUSAL_BACKOFF = { baseMs: 1000, capMs: 60_000 }

/** Declined single dials retried at once, per proxy in the set (see the top of this file). */
export const DECLINES_IN_A_ROW_PER_PROXY = 2

/**
 * The tunnels held, by proxy ID in the order they were opened, each with the latest set its
 * proxy announced and when the auth server signed that set (epoch ms, its clock).
 */
export type HeldTunnels = ReadonlyMap<string, { readonly announced?: readonly string[]; readonly announcedAt?: number }>

export interface PolicyOptions {
  /** Backoff after failed dials. */
  failureBackoff?: Omit<BackoffOptions, 'random'>
  /** Backoff after dials that landed on a proxy already held. */
  duplicateBackoff?: Omit<BackoffOptions, 'random'>
  /** Backoff after tunnels refused at their hello. */
  refusalBackoff?: Omit<BackoffOptions, 'random'>
  /** Uniform in [0, 1): spreads a fleet's dials over their windows. */
  random: () => number
}

/** What to do once the proxies announced a set. */
export interface AnnounceDecision {
  /** Proxies whose tunnels to close: they left the live set (one tunnel is always kept, to stay reachable). */
  close: string[]
  /**
   * 'now': start dialling for the missing proxies; 'wake': cut short a wait between rounds
   * (what is missing may have changed), but start no dials; `afterMs`: both, after a spread.
   */
  dial: 'now' | 'wake' | { afterMs: number }
}

/** How a round of dials went. */
export interface RoundOutcome {
  size: number
  /** Tunnels to proxies not held before, now held. */
  adopted: number
  /** Tunnels closed at once: to proxies held already (by an earlier dial of the same round), or outside the newest live set. */
  duplicates: number
  /** Dials a proxy held already refused before its handshake. */
  declined: number
  /** A dial failed otherwise (timeout, refusal, a proxy going away). */
  failed: boolean
}

/** What to do once a held tunnel closed. */
export type LossDecision =
  /** Nothing: its proxy left the live set, and the others will announce its return. */
  | { kind: 'left' }
  /** Its proxy is stopping: read the live set again after the proxies' next look at it. */
  | { kind: 'stopping'; lookAgainAfterMs: number }
  /** Dial again, at once (`afterMs` undefined) or after a spread. */
  | { kind: 'redial'; afterMs?: number }

export class TunnelPolicy {
  /** The newest live set heard, and when the auth server signed it: an older set, from any proxy, is passed over. */
  private newest?: { ids: readonly string[]; at: number }
  /** The proxies to hold: the newest set, less any that said it is stopping since. Undefined before a set is heard. */
  private wanted?: Set<string>
  private declinedInARow = 0
  private readonly failures: Backoff
  private readonly duplicates: Backoff
  private readonly refusals: Backoff
  private readonly random: () => number

  constructor(options: PolicyOptions) {
    this.random = options.random
    this.failures = new Backoff({ ...(options.failureBackoff ?? { baseMs: 500, capMs: 10_000 }), random: options.random })
    this.duplicates = new Backoff({ ...(options.duplicateBackoff ?? { baseMs: 500, capMs: 15_000 }), random: options.random })
    this.refusals = new Backoff({ ...(options.refusalBackoff ?? REFUSAL_BACKOFF), random: options.random })
  }

  /** The newest live set heard, sorted; undefined before any proxy announced one. */
  get liveSet(): string[] | undefined {
    return this.wanted && [...this.wanted].sort()
  }

  /** Whether the pool should hold a tunnel to this proxy (any proxy, before a set is known). */
  wants(proxyId: string): boolean {
    return this.wanted === undefined || this.wanted.has(proxyId)
  }

  /** How many dials the next round makes: 0 when every proxy wanted is held (or, before a set is known, any one). */
  roundSize(held: HeldTunnels): number {
    if (!this.wanted) return held.size === 0 ? 1 : 0
    let missing = 0
    for (const id of this.wanted) if (!held.has(id)) missing++
    return missing > 1 ? this.wanted.size : missing
  }

  /**
   * After a round: how long to wait before the next, or undefined to dial again at once.
   * Any failure (a proxy too busy to finish handshakes in time, one going away) slows the
   * next round down, whatever else the round found: dialling a busy proxy again at once
   * only adds to its queue.
   */
  afterRound(round: RoundOutcome): number | undefined {
    if (round.adopted > 0) this.duplicates.reset()
    if (round.failed) return this.failures.next()
    if (round.adopted > 0) {
      // Only a new tunnel shows the failures are over: a decline came from a proxy
      // already held and says nothing about the one that failed.
      this.failures.reset()
      this.declinedInARow = 0
      return undefined
    }
    const lookingForOne = round.size === 1 && round.duplicates === 0 && round.declined === 1
    if (lookingForOne && ++this.declinedInARow < DECLINES_IN_A_ROW_PER_PROXY * Math.max(this.wanted?.size ?? 1, 1)) return undefined
    this.declinedInARow = 0
    return this.duplicates.next()
  }

  /**
   * Every proxy wanted is held (or the set shrank to what is held): past failures say
   * nothing about the next time a proxy goes missing, which should start from the shortest
   * wait again.
   */
  completed(): void {
    this.failures.reset()
    this.duplicates.reset()
    this.declinedInARow = 0
  }

  /**
   * A held proxy announced a set, or a tunnel was adopted (`spreadMs`: how long the fleet
   * should take to reach a proxy that joined it, the announcing proxy's hint). The newest
   * set heard decides, whichever proxy relayed it; undefined before any was heard.
   */
  announced(held: HeldTunnels, spreadMs = LOSS_SPREAD_MS): AnnounceDecision | undefined {
    const heard = newestSet(held)
    if (heard && (!this.newest || heard.at > this.newest.at)) this.newest = heard
    if (!this.newest) return undefined
    const live = new Set(this.newest.ids)
    const first = this.wanted === undefined
    const joined = !first && [...live].some((id) => !this.wanted!.has(id))
    this.wanted = live
    const close: string[] = []
    let kept = held.size
    for (const id of held.keys()) {
      if (!live.has(id) && kept > 1) {
        close.push(id)
        kept--
      }
    }
    // A proxy (re)joined: the whole fleet hears it at once, so its returns are spread over
    // a window the announcing proxy sizes to the fleet.
    if (joined && kept > 0) return { close, dial: { afterMs: Math.floor(this.random() * spreadMs) } }
    // Only the first set (or a join with no tunnel held) starts dialling at once. Another
    // proxy repeating a set already heard must not: the whole fleet hears it at the same
    // moment, and would come back to a returning proxy without the spread.
    return { close, dial: first || joined ? 'now' : 'wake' }
  }

  /**
   * A tunnel the proxy refused at its hello closed: how long to wait before dialling again,
   * the refusal backoff's next window, or the proxy's `retryAfterMs` (at most
   * MAX_SERVER_WAIT_MS) when longer. Neither adopting a tunnel nor holding every proxy
   * resets it: a refused tunnel was adopted too.
   */
  refused(retryAfterMs = 0): number {
    return Math.max(this.refusals.next(), Math.min(retryAfterMs, MAX_SERVER_WAIT_MS))
  }

  /** The tunnel to `proxyId` closed (not refused); `leaving`: its proxy said it is stopping; `heldAfter`: tunnels still held. */
  lost(proxyId: string, leaving: boolean, heldAfter: number): LossDecision {
    // A tunnel that ended for another reason had been kept: the refusals are over.
    this.refusals.reset()
    if (this.wanted && !this.wanted.has(proxyId) && heldAfter > 0) {
      // Closed because the other proxies say it left the live set (their word can come
      // before its own goodbye): they announce its return, with a spread. A redial of its
      // own could fall after that return and bring the node back without one.
      return { kind: 'left' }
    }
    if (leaving && heldAfter > 0) {
      // A clean stop: the proxy has left the live set, and the others announce its return.
      // Dialling for it meanwhile would only land on proxies already held. After the
      // others' next look at the live set, their word decides: a proxy back within one
      // look was never seen to leave, so no announcement would bring the node back.
      this.wanted?.delete(proxyId)
      return { kind: 'stopping', lookAgainAfterMs: PROXY_LOOK_MS + 1000 }
    }
    // Still reachable through the others: no hurry, and a fleet that lost the same proxy
    // at the same moment (it restarted) should not come back to it all in one second.
    return heldAfter > 0 ? { kind: 'redial', afterMs: Math.floor(this.random() * LOSS_SPREAD_MS) } : { kind: 'redial' }
  }
}

/**
 * The newest set the held proxies announced: the auth server signed each with the time it
 * read it, so the latest read wins, whichever proxy relays it. A proxy that has not heard of
 * a change yet, or one cut off from the auth server, relays an older set, which is passed
 * over. Undefined when none has announced a set (an empty set says nothing: the proxy has
 * just started and does not know it yet).
 */
export function newestSet(held: HeldTunnels): { ids: readonly string[]; at: number } | undefined {
  let newest: { ids: readonly string[]; at: number } | undefined
  for (const { announced, announcedAt } of held.values()) {
    if (!announced?.length || announcedAt === undefined) continue
    if (!newest || announcedAt > newest.at) newest = { ids: announced, at: announcedAt }
  }
  return newest
}
