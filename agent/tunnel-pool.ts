// One tunnel to every live proxy, all reached through one (load-balanced) address. The
// balancer decides which proxy each dial lands on, so the pool keeps dialling until it
// holds a tunnel to every proxy the proxies announce, closes duplicates, drops proxies
// that leave the set, and backs off with full jitter so a fleet never storms a proxy.
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
// tail of dials into minutes. (Four times as many made no difference to a 5,000-agent
// restart behind round robin: see bench:mesh.)
//
// A round that found nothing new otherwise waits a backoff window that grows from 0.5 s to
// 15 s.

import { Backoff } from '../shared/backoff.ts'
import { DEFAULTS, joinHostPort } from '../shared/config.ts'
import type { Logger } from '../shared/log.ts'
import { AgentTunnel, credentialsKey, HeldProxyError, ResumedSessionRefusedError, type TunnelOptions } from './tunnel.ts'

export interface PoolOptions extends Omit<TunnelOptions, 'host' | 'port'> {
  host: string
  port: number
  /** CA and certificate messages from any tunnel's control stream. */
  onControl?: (tunnel: AgentTunnel, message: Record<string, unknown>) => void
  /** After a round in which a dial failed, with the number of proxies held. */
  onFailedRound?: (held: number) => void
  /** Backoff after failed dials. */
  failureBackoff?: { baseMs: number; capMs: number }
  /** Backoff after dials that landed on a proxy already held. */
  duplicateBackoff?: { baseMs: number; capMs: number }
}

/** A tunnel lost while others are held is redialled after a random delay up to this. */
const LOSS_SPREAD_MS = 5000

/**
 * By when every proxy has looked at the live set since a proxy left it: they read it every
 * second, proxies of earlier versions at each heartbeat.
 */
const PROXY_LOOK_MS = DEFAULTS.heartbeatIntervalMs

/** Declined single dials retried at once, per proxy in the set (see the top of this file). */
export const DECLINES_IN_A_ROW_PER_PROXY = 2

/** Session tickets kept, one per proxy (the most recently used proxies). */
const MAX_TICKETS = 32

interface Offer {
  proxyId: string
  ticket: Buffer
}

export class TunnelPool {
  private readonly tunnels = new Map<string, AgentTunnel>()
  private readonly options: PoolOptions
  private readonly log: Logger
  private wanted?: Set<string>
  private dialing = false
  private stopped = false
  private wake?: () => void
  private readonly failures: Backoff
  private readonly duplicates: Backoff
  /** The latest TLS session ticket from each proxy, valid for the credentials in `ticketsFor`. */
  private readonly tickets = new Map<string, Buffer>()
  private ticketsFor = ''
  /** Dials made so far (for tests and benchmarks). */
  dials = 0
  /** Tunnels opened by resuming a TLS session (for tests and benchmarks). */
  resumed = 0

  constructor(options: PoolOptions) {
    this.options = options
    this.log = options.log
    this.failures = new Backoff(options.failureBackoff ?? { baseMs: 500, capMs: 10_000 })
    this.duplicates = new Backoff(options.duplicateBackoff ?? { baseMs: 500, capMs: 15_000 })
  }

  /** Proxy IDs this agent holds a tunnel to. */
  get held(): string[] {
    return [...this.tunnels.keys()].sort()
  }

  /** The (load-balanced) address every dial goes to. */
  get address(): string {
    return joinHostPort(this.options.host, this.options.port)
  }

  /** The live proxy set the held proxies announce (undefined before any did). */
  get announcedSet(): string[] | undefined {
    return this.wanted && [...this.wanted].sort()
  }

  /** How many proxies this agent holds a tunnel to (without building the list). */
  get heldCount(): number {
    return this.tunnels.size
  }

  /** Sends the node's labels, which have just changed, through every tunnel. */
  relabel(): void {
    const labels = this.options.labels()
    for (const tunnel of this.tunnels.values()) tunnel.sendLabels(labels)
  }

  /** Tells every proxy held the node's renewed certificate (it was renewed through one of them). */
  announceCertificate(tlsCertPem: string): void {
    for (const tunnel of this.tunnels.values()) tunnel.sendCertificate(tlsCertPem)
  }

  get all(): AgentTunnel[] {
    return [...this.tunnels.values()]
  }

  start(): void {
    void this.fill()
  }

  private missing(): boolean {
    if (!this.wanted) return this.tunnels.size === 0
    for (const id of this.wanted) if (!this.tunnels.has(id)) return true
    return false
  }

  /** How many proxies are wanted and not held (1 before any proxy announced the set). */
  private missingCount(): number {
    if (!this.wanted) return this.tunnels.size === 0 ? 1 : 0
    let count = 0
    for (const id of this.wanted) if (!this.tunnels.has(id)) count++
    return count
  }

  /** Dials until every wanted proxy is held; one loop at a time. */
  private async fill(): Promise<void> {
    if (this.dialing || this.stopped) return
    this.dialing = true
    let declinedInARow = 0
    try {
      while (!this.stopped && this.missing()) {
        const missing = this.missingCount()
        const size = this.wanted && missing > 1 ? this.wanted.size : missing
        this.dials += size
        const held = this.held
        const offers = this.offers(size)
        const results = await Promise.allSettled(offers.map((offer) => AgentTunnel.open({ ...this.options, held, session: offer?.ticket })))
        let adopted = 0
        let duplicates = 0
        let declined = 0
        let failure: Error | undefined
        for (const [i, result] of results.entries()) {
          if (result.status === 'rejected') {
            if (result.reason instanceof HeldProxyError) declined++
            else {
              failure = result.reason as Error
              // The proxy resumed the session and then refused it (its certificate expired, a
              // CA no longer trusted): the next dial there makes a full handshake.
              const offer = offers[i]
              if (failure instanceof ResumedSessionRefusedError && offer && this.tickets.get(offer.proxyId) === offer.ticket) this.tickets.delete(offer.proxyId)
            }
            continue
          }
          const tunnel = result.value
          if (this.stopped || this.tunnels.has(tunnel.proxyId)) {
            tunnel.close()
            duplicates++
            continue
          }
          this.adopt(tunnel)
          adopted++
        }
        if (adopted > 0) this.duplicates.reset()
        if (failure) {
          // Any failure (a proxy too busy to finish handshakes in time, one going away)
          // slows the next round down, whatever else the round found: dialling a busy
          // proxy again at once only adds to its queue.
          const delay = this.failures.next()
          this.log.warn(`tunnel to ${this.options.host}:${this.options.port} failed (${failure.message}); retrying in ${delay} ms`)
          this.options.onFailedRound?.(this.tunnels.size)
          await this.sleep(delay)
          continue
        }
        if (adopted > 0) {
          // Only a new tunnel shows the failures are over: a decline came from a proxy
          // already held and says nothing about the one that failed.
          this.failures.reset()
          declinedInARow = 0
          continue
        }
        if (size === 1 && duplicates === 0 && declined === 1 && ++declinedInARow < DECLINES_IN_A_ROW_PER_PROXY * Math.max(this.wanted?.size ?? 1, 1)) continue
        declinedInARow = 0
        await this.sleep(this.duplicates.next())
      }
      // Complete (or the set shrank to what is held): past failures say nothing about the
      // next time a proxy goes missing, which should start from the shortest wait again.
      this.failures.reset()
      this.duplicates.reset()
    } finally {
      this.dialing = false
    }
  }

  /**
   * The session tickets to offer in a round of `size` dials: those of proxies wanted and
   * not held, one per dial in turn (none where there is no ticket). A ticket resumes only at
   * the proxy that issued it, so offering one costs nothing where the balancer sends the
   * dial elsewhere.
   */
  private offers(size: number): (Offer | undefined)[] {
    const key = credentialsKey(this.options.identity)
    if (key !== this.ticketsFor) {
      this.tickets.clear()
      this.ticketsFor = key
    }
    const candidates: Offer[] = []
    for (const [proxyId, ticket] of this.tickets) if (!this.tunnels.has(proxyId) && (!this.wanted || this.wanted.has(proxyId))) candidates.push({ proxyId, ticket })
    return Array.from({ length: size }, (_, i) => candidates[i % Math.max(candidates.length, 1)])
  }

  private keepTicket(proxyId: string, ticket: Buffer): void {
    if (this.ticketsFor !== credentialsKey(this.options.identity)) return
    this.tickets.delete(proxyId)
    this.tickets.set(proxyId, ticket)
    if (this.tickets.size > MAX_TICKETS) this.tickets.delete(this.tickets.keys().next().value!)
  }

  private adopt(tunnel: AgentTunnel): void {
    const id = tunnel.proxyId
    this.tunnels.set(id, tunnel)
    tunnel.activate()
    if (tunnel.resumed) this.resumed++
    if (tunnel.ticket) this.keepTicket(id, tunnel.ticket)
    tunnel.on('session', (ticket: Buffer) => this.keepTicket(id, ticket))
    this.log.info(`tunnel to proxy ${id} open (${this.tunnels.size} held${tunnel.resumed ? ', TLS session resumed' : ''})`)
    tunnel.on('proxies', (_ids: string[], spreadMs?: number) => this.onAnnounce(spreadMs))
    for (const event of ['ca', 'certs', 'renew_failed']) tunnel.on(event, (message: Record<string, unknown>) => this.options.onControl?.(tunnel, message))
    tunnel.on('close', () => {
      if (this.tunnels.get(id) !== tunnel) return
      this.tunnels.delete(id)
      if (this.stopped) return
      if (this.wanted && !this.wanted.has(id) && this.tunnels.size > 0) {
        // Closed here because the other proxies say it left the live set (their word can
        // come before its own goodbye): they announce its return, with a spread. A redial
        // of its own could fall after that return and bring the node back without one.
        return
      }
      if (tunnel.leaving && this.tunnels.size > 0) {
        // A clean stop: the proxy has left the live set, and the others announce its return.
        // Dialling for it meanwhile would only land on proxies already held. After the
        // others' next look at the live set, their word decides: a proxy back within one
        // look was never seen to leave, so no announcement would bring the node back.
        this.wanted?.delete(id)
        this.log.info(`proxy ${id} is stopping; its tunnel closed (${this.tunnels.size} held)`)
        setTimeout(() => this.onAnnounce(), PROXY_LOOK_MS + 1000).unref()
        return
      }
      this.log.info(`tunnel to proxy ${id} closed; ${this.tunnels.size} held`)
      // Still reachable through the others: no hurry, and a fleet that lost the same proxy
      // at the same moment (it restarted) should not come back to it all in one second.
      if (this.tunnels.size > 0) setTimeout(() => void this.fill(), Math.floor(Math.random() * LOSS_SPREAD_MS)).unref()
      else void this.fill()
    })
    if (tunnel.announced) this.onAnnounce()
  }

  /**
   * The live set as the held proxies tell it. Each proxy learns it from the auth server
   * every few seconds, so two may briefly disagree (one has not yet heard of a proxy that
   * just started): a proxy counts as live while any other proxy announces it, and the
   * agent follows the latest word of each. A proxy's word about itself alone does not
   * count once others speak: one cut off from the auth server keeps announcing itself.
   * Undefined before any proxy has announced a set (an empty set says nothing: the proxy
   * has just started and does not know it yet).
   */
  private liveSet(): Set<string> | undefined {
    const sets: [string, string[]][] = []
    for (const [id, tunnel] of this.tunnels) if (tunnel.announced?.length) sets.push([id, tunnel.announced])
    if (sets.length === 0) return undefined
    const live = new Set<string>()
    for (const [from, ids] of sets) for (const id of ids) if (sets.length === 1 || id !== from) live.add(id)
    return live.size > 0 ? live : undefined
  }

  /** `spreadMs`: how long the fleet should take to reach a proxy that joined (the proxy's hint). */
  private onAnnounce(spreadMs = LOSS_SPREAD_MS): void {
    const live = this.liveSet()
    if (!live) return
    const first = this.wanted === undefined
    const joined = !first && [...live].some((id) => !this.wanted!.has(id))
    this.wanted = live
    for (const [id, tunnel] of this.tunnels) {
      // A proxy that left the live set loses its tunnel (keep at least one to stay reachable).
      if (!this.wanted.has(id) && this.tunnels.size > 1) {
        this.log.info(`proxy ${id} left the live set; closing its tunnel`)
        tunnel.close()
      }
    }
    if (joined && this.tunnels.size > 0) {
      // A proxy (re)joined: the whole fleet hears it at once, so its returns are spread over
      // a window the announcing proxy sizes to the fleet.
      setTimeout(() => {
        this.wake?.()
        void this.fill()
      }, Math.floor(Math.random() * spreadMs)).unref()
      return
    }
    // Only the first set (or a join with no tunnel held) starts dialling at once. Another
    // proxy repeating a set already heard must not: the whole fleet hears it at the same
    // moment, and would come back to a returning proxy without the spread.
    if (first || joined) void this.fill()
    else this.wake?.()
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }

  stop(): void {
    this.stopped = true
    this.wake?.()
    for (const tunnel of this.tunnels.values()) tunnel.close()
    this.tunnels.clear()
  }
}
