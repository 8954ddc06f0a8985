// The proxy's address book of direct nodes: those that heartbeat to the auth server
// themselves and serve proxies at an address of their own. The auth server keeps the list
// (GET /v1/proxies/direct-nodes); the proxy reuses its answer for a few seconds, so a burst
// of user connections costs one request, and asks again when a name is missing from it.
// While the auth server cannot be reached, the last answer it gave is used.

import { parseHostPort } from '../shared/address.ts'
import { DEFAULTS } from '../shared/config.ts'
import type { DirectNodeEntry } from '../shared/protocol/proxies.ts'

/**
 * How long an answer is reused: the addresses change only when a node moves, and a node
 * that moved is asked for again at once after a failed dial (forget()). One heartbeat
 * interval (DEFAULTS.heartbeatIntervalMs), the pace at which the auth server learns them.
 */
export const DIRECT_NODES_CACHE_MS = DEFAULTS.heartbeatIntervalMs

/**
 * A name missing from the answer refreshes it, but at most this often: a node that came
 * online a moment ago is found at once, and users asking for names that do not exist cannot
 * make the proxy query the auth server once per connection.
 */
export const DIRECT_NODES_MISS_REFRESH_MS = 1000

export interface DirectNode {
  hostId: string
  nodename: string
  host: string
  port: number
  /** As its heartbeats report them; none from an auth server that does not send them. */
  labels: Record<string, string>
}

export interface DirectNodeBookOptions {
  fetch: () => Promise<DirectNodeEntry[]>
  now?: () => number
}

export class DirectNodeBook {
  private readonly options: DirectNodeBookOptions
  private readonly now: () => number
  private entries?: DirectNodeEntry[]
  /** When the auth server was last asked, answered or not. */
  private askedAt = -Infinity
  private inFlight?: Promise<DirectNodeEntry[]>

  constructor(options: DirectNodeBookOptions) {
    this.options = options
    this.now = options.now ?? Date.now
  }

  /** The direct node with this host ID or name; an error when several nodes share the name. */
  async find(target: string): Promise<DirectNode | undefined> {
    let entries = await this.list(this.age() >= DIRECT_NODES_CACHE_MS)
    let found = match(entries, target)
    if (!found && this.age() >= DIRECT_NODES_MISS_REFRESH_MS) {
      entries = await this.list(true)
      found = match(entries, target)
    }
    if (!found) return undefined
    const { host, port } = parseHostPort(found.addr, DEFAULTS.sshPort)
    return { hostId: found.host_id, nodename: found.nodename, host, port, labels: found.labels ?? {} }
  }

  /** A dial failed: the node may have moved, so the next lookup asks the auth server. */
  forget(): void {
    this.askedAt = -Infinity
  }

  /** The next lookup asks the auth server unless it was asked within `ms`: many lookups in one pass cost one request. */
  forgetOlderThan(ms: number): void {
    if (this.age() >= ms) this.forget()
  }

  private age(): number {
    return this.now() - this.askedAt
  }

  /**
   * The cached answer, or a fresh one (one request shared by concurrent lookups). When the
   * auth server does not answer, the last answer stands; with none yet, the error is thrown.
   */
  private async list(refresh: boolean): Promise<DirectNodeEntry[]> {
    if (!refresh && this.entries) return this.entries
    this.inFlight ??= this.ask().finally(() => {
      this.inFlight = undefined
    })
    return this.inFlight
  }

  private async ask(): Promise<DirectNodeEntry[]> {
    this.askedAt = this.now()
    try {
      this.entries = await this.options.fetch()
    } catch (error) {
      if (!this.entries) throw error
    }
    return this.entries
  }
}

function match(entries: DirectNodeEntry[], target: string): DirectNodeEntry | undefined {
  const byId = entries.find((entry) => entry.host_id === target)
  if (byId) return byId
  const named = entries.filter((entry) => entry.nodename === target)
  if (named.length > 1) throw new Error(`${named.length} direct nodes are named "${target}": use a host ID (${named.map((n) => n.host_id).join(', ')})`)
  return named[0]
}
