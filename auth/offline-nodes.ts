// Offline nodes are forgotten: a node's presence item stays after its heartbeats stop, so
// that `nodes ls --all` shows it offline with when it was last seen, and goes once the node
// has been silent for `auth_service.node_ttl` (default 30 days), unless a lock or removal
// record still names it. Forgetting drops only the listing: the registration stays, so a
// device that comes back later still renews (or recovers) with its own identity.
//
// Every auth server sharing the backend sweeps; each delete is conditional on the item's
// revision, so a heartbeat written meanwhile is never lost.

import type { Logger } from '../shared/log.ts'
import type { Backend } from './backend/backend.ts'
import { PRESENCE, type Presence } from './nodes.ts'

/** How often the sweep runs: a tenth of node_ttl, between a second and an hour. */
export function sweepIntervalMs(nodeTtlMs: number): number {
  return Math.min(3600_000, Math.max(1000, Math.floor(nodeTtlMs / 10)))
}

export interface OfflineSweepOptions {
  backend: Backend
  nodeTtlMs: number
  /** Whether a lock or a removal record names the host. */
  named: (hostId: string) => boolean
  log: Logger
  clock?: () => number
}

export class OfflineSweep {
  private readonly options: OfflineSweepOptions
  private readonly clock: () => number
  private timer?: NodeJS.Timeout
  private running = false

  constructor(options: OfflineSweepOptions) {
    this.options = options
    this.clock = options.clock ?? Date.now
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return
      this.running = true
      this.sweep()
        .catch((error: Error) => this.options.log.warn(`the offline node sweep failed: ${error.message}`))
        .finally(() => (this.running = false))
    }, sweepIntervalMs(this.options.nodeTtlMs))
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** Forgets the nodes silent for longer than node_ttl that nothing names; returns their host IDs. */
  async sweep(): Promise<string[]> {
    const now = this.clock()
    const forgotten: string[] = []
    for (const item of await this.options.backend.list(PRESENCE)) {
      const presence = JSON.parse(item.value) as Presence
      if (now - presence.lastSeen <= this.options.nodeTtlMs || this.options.named(presence.hostId)) continue
      if (!(await this.options.backend.txn([{ key: item.key, revision: item.revision }], [{ op: 'delete', key: item.key }]))) continue
      forgotten.push(presence.hostId)
      this.options.log.info(`forgot node ${presence.nodename}: offline since ${new Date(presence.lastSeen).toISOString()}`, { host_id: presence.hostId })
    }
    return forgotten
  }
}
