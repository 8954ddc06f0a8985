// Connections open at once from each source address (an address group: an IPv6 /64), each
// counted from its admission until it closes, with a most per address beyond which new
// ones are turned away: the TLS gate's `guard` (config.ts, maxOpenPerAddress) and the proxy's
// web port (proxy/http-connections.ts) each keep one.

export class OpenPerAddress {
  readonly #most: number
  readonly #open = new Map<string, number>()

  constructor(most: number) {
    this.#most = most
  }

  /** Counts `socket` for `group` until it closes; false, counting nothing, when the group already has its most open. */
  admit(socket: { once(event: 'close', listener: () => void): unknown }, group: string): boolean {
    const open = this.#open.get(group) ?? 0
    if (open >= this.#most) return false
    this.#open.set(group, open + 1)
    socket.once('close', () => {
      const left = (this.#open.get(group) ?? 1) - 1
      if (left > 0) this.#open.set(group, left)
      else this.#open.delete(group)
    })
    return true
  }
}
