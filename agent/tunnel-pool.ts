// One tunnel to every live proxy, all reached through one (load-balanced) address. The
// balancer decides which proxy each dial lands on, so the pool keeps dialling until it
// holds a tunnel to every proxy the proxies announce, closes duplicates, drops proxies
// that leave the set, and backs off with full jitter so a fleet never storms a proxy.

import { Backoff } from '../shared/backoff.ts'
import type { Logger } from '../shared/log.ts'
import { AgentTunnel, type TunnelOptions } from './tunnel.ts'

export interface PoolOptions extends Omit<TunnelOptions, 'host' | 'port'> {
  host: string
  port: number
  /** CA and certificate messages from any tunnel's control stream. */
  onControl?: (tunnel: AgentTunnel, message: Record<string, unknown>) => void
  /** Backoff after failed dials. */
  failureBackoff?: { baseMs: number; capMs: number }
  /** Backoff after dials that landed on a proxy already held. */
  duplicateBackoff?: { baseMs: number; capMs: number }
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
  /** Dials made so far (for tests and benchmarks). */
  dials = 0

  constructor(options: PoolOptions) {
    this.options = options
    this.log = options.log
    this.failures = new Backoff(options.failureBackoff ?? { baseMs: 500, capMs: 30_000 })
    this.duplicates = new Backoff(options.duplicateBackoff ?? { baseMs: 50, capMs: 5_000 })
  }

  /** Proxy IDs this agent holds a tunnel to. */
  get held(): string[] {
    return [...this.tunnels.keys()].sort()
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

  /** Dials until every wanted proxy is held; one loop at a time. */
  private async fill(): Promise<void> {
    if (this.dialing || this.stopped) return
    this.dialing = true
    try {
      while (!this.stopped && this.missing()) {
        this.dials++
        let tunnel: AgentTunnel
        try {
          tunnel = await AgentTunnel.open(this.options)
        } catch (error) {
          const delay = this.failures.next()
          this.log.warn(`tunnel to ${this.options.host}:${this.options.port} failed (${(error as Error).message}); retrying in ${delay} ms`)
          await this.sleep(delay)
          continue
        }
        this.failures.reset()
        if (this.stopped || this.tunnels.has(tunnel.proxyId)) {
          tunnel.close()
          await this.sleep(this.duplicates.next())
          continue
        }
        this.duplicates.reset()
        this.adopt(tunnel)
      }
    } finally {
      this.dialing = false
    }
  }

  private adopt(tunnel: AgentTunnel): void {
    const id = tunnel.proxyId
    this.tunnels.set(id, tunnel)
    tunnel.activate()
    this.log.info(`tunnel to proxy ${id} open (${this.tunnels.size} held)`)
    tunnel.on('proxies', (ids: string[]) => this.onAnnounce(ids))
    for (const event of ['ca', 'certs', 'renew_failed']) tunnel.on(event, (message: Record<string, unknown>) => this.options.onControl?.(tunnel, message))
    tunnel.on('close', () => {
      if (this.tunnels.get(id) !== tunnel) return
      this.tunnels.delete(id)
      if (this.stopped) return
      this.log.info(`tunnel to proxy ${id} closed; ${this.tunnels.size} held`)
      void this.fill()
    })
    if (tunnel.announced) this.onAnnounce(tunnel.announced)
  }

  private onAnnounce(ids: string[]): void {
    this.wanted = new Set(ids)
    for (const [id, tunnel] of this.tunnels) {
      // A proxy that left the live set loses its tunnel (keep at least one to stay reachable).
      if (!this.wanted.has(id) && this.tunnels.size > 1) {
        this.log.info(`proxy ${id} left the live set; closing its tunnel`)
        tunnel.close()
      }
    }
    this.wake?.()
    void this.fill()
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
