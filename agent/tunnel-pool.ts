// One tunnel to every live proxy, all reached through one (load-balanced) address. This
// file is the mechanism: it dials rounds of tunnels, keeps those it adopts and their TLS
// session tickets, and follows their events. Which proxies to hold and when to dial is
// the policy's (tunnel-policy.ts). The dialer and the clock are injected, so that the
// pool can be driven without a network or real time.

import { joinHostPort } from '../shared/address.ts'
import type { Logger } from '../shared/log.ts'
import type { TrustMessage, TunnelRefused } from './tunnel.ts'
import { AgentTunnel, credentialsKey, HeldProxyError, ResumedSessionRefusedError, type TunnelOptions } from './tunnel.ts'
import { TunnelPolicy } from './tunnel-policy.ts'

/** A tunnel as the pool uses it (AgentTunnel's shape). */
export interface PoolTunnel {
  readonly proxyId: string
  /** The latest live proxy set this proxy announced, as the auth server signed it. */
  readonly announced?: readonly string[]
  /** When the auth server signed `announced` (epoch ms, its clock). */
  readonly announcedAt?: number
  /** The proxy said it is stopping. */
  readonly leaving: boolean
  /** The TLS handshake resumed an earlier session. */
  readonly resumed: boolean
  /** The proxy refused the tunnel at its hello, and why (it closes it next). */
  readonly refusal?: TunnelRefused
  /** The latest TLS session ticket the proxy sent. */
  readonly ticket?: Buffer
  /** Says hello: the proxy may route users through this tunnel. */
  activate(): void
  close(): void
  sendLabels(labels: Record<string, string>): void
  sendCertificate(tlsCertPem: string): void
  on(event: 'close', listener: () => void): this
  on(event: 'session', listener: (ticket: Buffer) => void): this
  on(event: 'proxies', listener: (ids: string[], spreadMs?: number) => void): this
  on(event: 'live_set_refused', listener: (reason: string) => void): this
  on(event: TrustMessage['type'], listener: (message: TrustMessage) => void): this
}

export interface PoolOptions<T> extends Omit<TunnelOptions, 'host' | 'port'> {
  host: string
  port: number
  /** CA, certificate and assigned labels messages from any tunnel's control stream. */
  onControl?: (tunnel: T, message: TrustMessage) => void
  /** A live set a tunnel's proxy announced without a valid signature of the auth server, and why. */
  onLiveSetRefused?: (tunnel: T, reason: string) => void
  /** After a round in which a dial failed, with the number of proxies held and the error of a failed dial. */
  onFailedRound?: (held: number, error: Error) => void
  /** Each time the pool dials again, or will once the proxy returns, and why: a round's dial failed, a tunnel was lost or refused at its hello, its proxy is stopping or left the live set. */
  onRedial?: (reason: RedialReason) => void
  /** A tunnel the pool held has closed. */
  onTunnelClosed?: (tunnel: T) => void
  /** A tunnel the proxy refused at its hello has closed; the pool dials again after `retryInMs`. */
  onRefused?: (tunnel: T, refusal: TunnelRefused, retryInMs: number) => void
  /** Backoff after failed dials. */
  failureBackoff?: { baseMs: number; capMs: number }
  /** Backoff after dials that landed on a proxy already held. */
  duplicateBackoff?: { baseMs: number; capMs: number }
  /** Backoff after tunnels refused at their hello. */
  refusalBackoff?: { baseMs: number; capMs: number }
}

export type RedialReason = 'dial_failed' | 'tunnel_lost' | 'proxy_stopping' | 'proxy_left' | 'refused'

/** Time as the pool sees it. */
export interface PoolClock {
  /**
   * Calls `callback` after `ms`; the returned function cancels the call. A `background`
   * call does not keep the process alive.
   */
  after(ms: number, callback: () => void, background?: boolean): () => void
}

export const systemClock: PoolClock = {
  after(ms, callback, background = false) {
    const timer = setTimeout(callback, ms)
    if (background) timer.unref()
    return () => clearTimeout(timer)
  },
}

/** What the pool runs on. */
export interface PoolParts<T> {
  /** Opens one tunnel through the balancer; rejects with HeldProxyError when the proxy reached is held already. */
  dial: (options: TunnelOptions) => Promise<T>
  clock: PoolClock
  /** Uniform in [0, 1): the policy's jitter. */
  random: () => number
}

/** Session tickets kept, one per proxy (the most recently used proxies). */
const MAX_TICKETS = 32

interface Offer {
  proxyId: string
  ticket: Buffer
}

/** The pool over any kind of tunnel; TunnelPool is the agent's, over AgentTunnel. */
export class TunnelPoolOf<T extends PoolTunnel> {
  private readonly tunnels = new Map<string, T>()
  private readonly options: PoolOptions<T>
  private readonly parts: PoolParts<T>
  private readonly policy: TunnelPolicy
  private readonly log: Logger
  private dialing = false
  private stopped = false
  private wake?: () => void
  /** The latest TLS session ticket from each proxy, valid for the credentials in `ticketsFor`. */
  private readonly tickets = new Map<string, Buffer>()
  private ticketsFor = ''
  /** Dials made so far (for tests and benchmarks). */
  dials = 0
  /** Tunnels opened by resuming a TLS session (for tests and benchmarks). */
  resumed = 0

  constructor(options: PoolOptions<T>, parts: PoolParts<T>) {
    this.options = options
    this.parts = parts
    this.log = options.log
    this.policy = new TunnelPolicy({
      failureBackoff: options.failureBackoff,
      duplicateBackoff: options.duplicateBackoff,
      refusalBackoff: options.refusalBackoff,
      random: parts.random,
    })
  }

  /** Proxy IDs this agent holds a tunnel to. */
  get held(): string[] {
    return [...this.tunnels.keys()].sort()
  }

  /** The (load-balanced) address every dial goes to. */
  get address(): string {
    return joinHostPort(this.options.host, this.options.port)
  }

  /** The newest live proxy set the proxies announced (undefined before any did). */
  get announcedSet(): string[] | undefined {
    return this.policy.liveSet
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

  get all(): T[] {
    return [...this.tunnels.values()]
  }

  start(): void {
    void this.fill()
  }

  stop(): void {
    this.stopped = true
    this.wake?.()
    for (const tunnel of this.tunnels.values()) tunnel.close()
    this.tunnels.clear()
  }

  /** Dials rounds until every wanted proxy is held; one loop at a time. */
  private async fill(): Promise<void> {
    if (this.dialing || this.stopped) return
    this.dialing = true
    try {
      for (let size = this.policy.roundSize(this.tunnels); !this.stopped && size > 0; size = this.policy.roundSize(this.tunnels)) {
        this.dials += size
        const held = this.held
        const offers = this.offers(size)
        const results = await Promise.allSettled(offers.map((offer) => this.parts.dial({ ...this.options, held, session: offer?.ticket, sessionProxyId: offer?.proxyId })))
        const round = { size, adopted: 0, duplicates: 0, declined: 0 }
        let failure: Error | undefined
        for (const [i, result] of results.entries()) {
          if (result.status === 'rejected') {
            if (result.reason instanceof HeldProxyError) round.declined++
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
            round.duplicates++
            continue
          }
          this.adopt(tunnel)
          // Closed at once, as outside the newest live set (a removed proxy the balancer
          // still sends dials to): no better than a duplicate, and the next round waits as long.
          if (this.tunnels.get(tunnel.proxyId) === tunnel) round.adopted++
          else round.duplicates++
        }
        const waitMs = this.policy.afterRound({ ...round, failed: failure !== undefined })
        if (failure) {
          this.log.warn(`tunnel to ${this.options.host}:${this.options.port} failed (${failure.message}); retrying in ${waitMs} ms`)
          this.options.onFailedRound?.(this.tunnels.size, failure)
          this.options.onRedial?.('dial_failed')
        }
        if (waitMs !== undefined) await this.sleep(waitMs)
      }
      this.policy.completed()
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
    for (const [proxyId, ticket] of this.tickets) if (!this.tunnels.has(proxyId) && this.policy.wants(proxyId)) candidates.push({ proxyId, ticket })
    return Array.from({ length: size }, (_, i) => candidates[i % Math.max(candidates.length, 1)])
  }

  private keepTicket(proxyId: string, ticket: Buffer): void {
    if (this.ticketsFor !== credentialsKey(this.options.identity)) return
    this.tickets.delete(proxyId)
    this.tickets.set(proxyId, ticket)
    if (this.tickets.size > MAX_TICKETS) this.tickets.delete(this.tickets.keys().next().value!)
  }

  private adopt(tunnel: T): void {
    const id = tunnel.proxyId
    this.tunnels.set(id, tunnel)
    tunnel.activate()
    if (tunnel.resumed) this.resumed++
    if (tunnel.ticket) this.keepTicket(id, tunnel.ticket)
    tunnel.on('session', (ticket) => this.keepTicket(id, ticket))
    this.log.info(`tunnel to proxy ${id} open (${this.tunnels.size} held${tunnel.resumed ? ', TLS session resumed' : ''})`)
    tunnel.on('proxies', (_ids, spreadMs) => this.onAnnounce(spreadMs))
    tunnel.on('live_set_refused', (reason) => this.options.onLiveSetRefused?.(tunnel, reason))
    for (const event of ['ca', 'certs', 'renew_failed', 'labels'] as const) tunnel.on(event, (message) => this.options.onControl?.(tunnel, message))
    tunnel.on('close', () => this.onClose(id, tunnel))
    // Judged at once against the newest set heard, whatever this proxy says: one the
    // cluster removed is outside it and closed (it can only repeat older sets).
    this.onAnnounce()
  }

  private onClose(id: string, tunnel: T): void {
    if (this.tunnels.get(id) !== tunnel) return
    this.tunnels.delete(id)
    this.options.onTunnelClosed?.(tunnel)
    if (this.stopped) return
    const refusal = tunnel.refusal
    if (refusal) {
      // It had opened, so no failure slowed the round that adopted it: without a wait of
      // its own the node would dial again at once, and be refused again, without end.
      const afterMs = this.policy.refused(refusal.retryAfterMs)
      this.options.onRedial?.('refused')
      this.options.onRefused?.(tunnel, refusal, afterMs)
      this.parts.clock.after(afterMs, () => void this.fill(), true)
      return
    }
    const next = this.policy.lost(id, tunnel.leaving, this.tunnels.size)
    this.options.onRedial?.(next.kind === 'left' ? 'proxy_left' : tunnel.leaving ? 'proxy_stopping' : 'tunnel_lost')
    if (next.kind === 'stopping') {
      this.log.info(`proxy ${id} is stopping; its tunnel closed (${this.tunnels.size} held)`)
      this.parts.clock.after(next.lookAgainAfterMs, () => this.onAnnounce(), true)
    } else if (next.kind === 'redial') {
      this.log.info(`tunnel to proxy ${id} closed; ${this.tunnels.size} held`)
      if (next.afterMs === undefined) void this.fill()
      else this.parts.clock.after(next.afterMs, () => void this.fill(), true)
    }
  }

  private onAnnounce(spreadMs?: number): void {
    const decision = this.policy.announced(this.tunnels, spreadMs)
    if (!decision) return
    for (const id of decision.close) {
      this.log.info(`proxy ${id} left the live set; closing its tunnel`)
      this.tunnels.get(id)?.close()
    }
    const { dial } = decision
    if (dial === 'now') void this.fill()
    else if (dial === 'wake') this.wake?.()
    else {
      this.parts.clock.after(
        dial.afterMs,
        () => {
          this.wake?.()
          void this.fill()
        },
        true,
      )
    }
  }

  /** Waits `ms`, or less if woken. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        cancel()
        resolve()
      }
      const cancel = this.parts.clock.after(ms, done)
      this.wake = done
    })
  }
}

/** The agent's pool: AgentTunnels dialled over the network, on the system's clock. */
export class TunnelPool extends TunnelPoolOf<AgentTunnel> {
  constructor(options: PoolOptions<AgentTunnel>) {
    super(options, { dial: AgentTunnel.open, clock: systemClock, random: Math.random })
  }
}
