// Connections accepted whose ClientHello has not arrived whole, counted per source address
// group (address-group.ts). When a group is over its limit, its oldest waiting connections
// are closed: an attacker holding connections open from an address that devices share (a
// NAT) then cannot keep the devices out, since theirs are the youngest and finish their
// ClientHello first. Connections younger than the grace period are never closed for this,
// and the closing waits until the event loop has read what arrived (setImmediate): a burst
// accepted in one go has its ClientHellos read only after all of it was accepted.

import type { GateStats } from './stats.ts'

/** A connection's place among the waiting; release it once its ClientHello is in or it closed. */
export interface HelloHold {
  release(): void
}

interface Waiting {
  since: number
  /** Closes the connection; it releases its hold itself. */
  evict: () => void
}

export class PendingHellos {
  readonly #limit: number
  readonly #graceMs: number
  readonly #stats: GateStats
  readonly #now: () => number
  /** Per group, its waiting connections in arrival order (a Set iterates in insertion order). */
  readonly #byGroup = new Map<string, Set<Waiting>>()
  /** Groups over their limit, to be brought back under it once the event loop has read what arrived. */
  readonly #over = new Set<string>()

  constructor(limitPerGroup: number, graceMs: number, stats: GateStats, now: () => number = Date.now) {
    this.#limit = limitPerGroup
    this.#graceMs = graceMs
    this.#stats = stats
    this.#now = now
  }

  /** How many connections of `group` are waiting now. */
  waiting(group: string): number {
    return this.#byGroup.get(group)?.size ?? 0
  }

  /**
   * Counts a connection as waiting for its ClientHello. `group` undefined (a trusted load
   * balancer that named no client) counts only towards the total.
   */
  hold(group: string | undefined, evict: () => void): HelloHold {
    const stats = this.#stats
    stats.pendingHello++
    const entry: Waiting = { since: this.#now(), evict }
    let set: Set<Waiting> | undefined
    if (group !== undefined) {
      set = this.#byGroup.get(group)
      if (!set) this.#byGroup.set(group, (set = new Set()))
      set.add(entry)
      if (set.size > this.#limit && !this.#over.has(group)) {
        this.#over.add(group)
        setImmediate(() => this.#makeRoom(group))
      }
    }
    let held = true
    return {
      release: () => {
        if (!held) return
        held = false
        stats.pendingHello--
        if (!set?.delete(entry) || set.size > 0) return
        this.#byGroup.delete(group!)
      },
    }
  }

  /** Closes the group's oldest waiting connections, past their grace period, until it is within its limit. */
  #makeRoom(group: string): void {
    this.#over.delete(group)
    const set = this.#byGroup.get(group)
    const graceEnds = this.#now() - this.#graceMs
    while (set && set.size > this.#limit) {
      const oldest = set.values().next().value!
      if (oldest.since > graceEnds) return
      set.delete(oldest)
      this.#stats.helloPerAddressClosed++
      oldest.evict()
    }
  }
}
