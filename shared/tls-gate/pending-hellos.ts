// Connections accepted whose ClientHello has not arrived whole, counted per source address
// group (address-group.ts). When a group is at its limit, a new connection closes the
// group's oldest waiting one: an attacker holding connections open from an address that
// devices share (a NAT) then cannot keep the devices out, since theirs are the youngest and
// finish their ClientHello first.

import type { GateStats } from './stats.ts'

/** A connection's place among the waiting; release it once its ClientHello is in or it closed. */
export interface HelloHold {
  release(): void
}

interface Waiting {
  /** Closes the connection; it releases its hold itself. */
  evict: () => void
}

export class PendingHellos {
  readonly #limit: number
  readonly #stats: GateStats
  /** Per group, its waiting connections in arrival order (a Set iterates in insertion order). */
  readonly #byGroup = new Map<string, Set<Waiting>>()

  constructor(limitPerGroup: number, stats: GateStats) {
    this.#limit = limitPerGroup
    this.#stats = stats
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
    const entry: Waiting = { evict }
    let set: Set<Waiting> | undefined
    if (group !== undefined) {
      set = this.#byGroup.get(group)
      if (!set) this.#byGroup.set(group, (set = new Set()))
      while (set.size >= this.#limit) {
        const oldest = set.values().next().value!
        set.delete(oldest)
        stats.helloPerAddressClosed++
        oldest.evict()
      }
      set.add(entry)
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
}
