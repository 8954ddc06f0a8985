// How a proxy tells the auth server which nodes' tunnels it holds (POST /v1/presence): a
// new tunnel within moments, and every tunnel as often as the auth server asks. The answer
// names the hosts it no longer knows (removed or replaced), whose tunnels are then closed.

import type { ApiClient } from '../shared/api-client.ts'
import { DEFAULTS } from '../shared/config.ts'
import type { Logger } from '../shared/log.ts'
import type { Tunnel, TunnelServer } from './tunnel-server.ts'

export interface PresenceReportsOptions {
  tunnels: TunnelServer
  /** The client for the auth server (replaced when this proxy's certificate is renewed). */
  auth: () => ApiClient
  log: Logger
}

export class PresenceReports {
  /** How often the auth server wants every tunnel's presence: a third of its presence TTL. */
  intervalMs: number = DEFAULTS.heartbeatIntervalMs
  private readonly options: PresenceReportsOptions
  /** Tunnels registered since the last report: sent within moments, the rest at the slower full rate. */
  private readonly fresh = new Set<Tunnel>()
  private pending?: NodeJS.Timeout
  private lastFull = 0
  private fullInFlight = false

  constructor(options: PresenceReportsOptions) {
    this.options = options
  }

  /**
   * A new tunnel shows in `nodes ls` within moments, but a burst of reconnecting agents
   * shares one report of just the new tunnels: one pending at a time, not one per tunnel.
   */
  opened(tunnel: Tunnel): void {
    this.fresh.add(tunnel)
    if (this.pending) return
    this.pending = setTimeout(() => {
      this.pending = undefined
      const fresh = [...this.fresh]
      this.fresh.clear()
      void this.report(fresh.filter((t) => this.options.tunnels.byHostId(t.hostId) === t))
    }, 200)
    this.pending.unref()
  }

  /**
   * Every tunnel, as often as the auth server asks: enough to keep the nodes present there.
   * One report in flight at a time: a slow auth server gets fewer, not a queue of them.
   */
  async reportAll(): Promise<void> {
    if (this.fullInFlight || Date.now() - this.lastFull < this.intervalMs - 500) return
    this.fullInFlight = true
    this.lastFull = Date.now()
    this.fresh.clear()
    try {
      await this.report(this.options.tunnels.list())
    } finally {
      this.fullInFlight = false
    }
  }

  stop(): void {
    clearTimeout(this.pending)
  }

  private async report(tunnels: Tunnel[]): Promise<void> {
    if (tunnels.length === 0) return
    const nodes = tunnels.map((t) => ({ host_id: t.hostId, addr: t.remoteAddress, labels: t.labels, ...(t.version ? { version: t.version } : {}) }))
    try {
      const answer = await this.options.auth().call('POST /v1/presence', { body: { nodes } })
      this.options.tunnels.dropUnregistered(answer.unknown)
    } catch (error) {
      this.options.log.warn(`presence report to the auth server failed: ${(error as Error).message}`)
    }
  }
}
