// The proxy's copy of who the cluster refuses although their certificates are valid
// (removed hosts, locked nodes and users). The live set the proxy reads every second
// carries the list's generation; when it differs from the copy's, the list is fetched
// again and everything this proxy holds is judged against it: tunnels of refused hosts,
// direct connections to them, and sessions of locked users are closed.

import type { Logger } from '../shared/log.ts'
import { parseSnapshot } from '../shared/protocol/proxies.ts'
import { MONOTONIC, RevocationList } from '../shared/revocation-list.ts'

export interface ProxyRevocationsOptions {
  /** GET /v1/proxies/revocations. */
  fetch: () => Promise<unknown>
  /** The list changed: close what it now refuses. */
  onChange: () => void
  log: Logger
}

export class ProxyRevocations {
  /** Lock ends counted on this machine's monotonic clock from each list's arrival: its wall clock may be off. */
  readonly list = new RevocationList(MONOTONIC, Date.now)
  private readonly options: ProxyRevocationsOptions
  private inFlight?: Promise<void>

  constructor(options: ProxyRevocationsOptions) {
    this.options = options
  }

  /** Fetches the list when the auth server reports a `generation` other than the one held. */
  async follow(generation: unknown): Promise<void> {
    if (typeof generation !== 'string' || generation === this.list.generation) return
    await this.refresh()
  }

  /** Fetches the list now (one fetch at a time). */
  async refresh(): Promise<void> {
    this.inFlight ??= this.fetch().finally(() => (this.inFlight = undefined))
    await this.inFlight
  }

  private async fetch(): Promise<void> {
    const snapshot = parseSnapshot(await this.options.fetch())
    if (!snapshot) throw new Error('the auth server sent no list of removed and locked identities')
    if (!this.list.replace(snapshot)) return
    this.options.log.debug('removed and locked identities updated', { hosts: snapshot.hosts.length, users: snapshot.users.length })
    this.options.onChange()
  }
}
