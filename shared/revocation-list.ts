// Who the cluster refuses although their certificates are valid: hosts removed with
// `warrenctl nodes rm`, and nodes and users under a lock (`warrenctl lock`). The auth server
// builds the list from its backend; every proxy holds a copy, fetched whenever the list's
// generation changes (the proxies read it with the live set, every second). Both judge with
// the same code: a host by its host ID (the certificate's CN, never reused), a user by name.

import type { RevocationSnapshot, RevokedHost, RevokedUser } from './protocol/proxies.ts'

export const EMPTY_SNAPSHOT: RevocationSnapshot = { generation: '', hosts: [], users: [] }

function inForce(entry: { until?: number }, nowMs: number): boolean {
  return entry.until === undefined || nowMs < entry.until
}

function byKey<T>(entries: T[], key: (entry: T) => string): Map<string, T[]> {
  const map = new Map<string, T[]>()
  for (const entry of entries) {
    const list = map.get(key(entry))
    if (list) list.push(entry)
    else map.set(key(entry), [entry])
  }
  return map
}

export class RevocationList {
  private current: RevocationSnapshot = EMPTY_SNAPSHOT
  private hosts = new Map<string, RevokedHost[]>()
  private users = new Map<string, RevokedUser[]>()
  private readonly now: () => number

  constructor(now: () => number = Date.now) {
    this.now = now
  }

  get generation(): string {
    return this.current.generation
  }

  get snapshot(): RevocationSnapshot {
    return this.current
  }

  /** Takes a new list; false when it is the one held already. */
  replace(snapshot: RevocationSnapshot): boolean {
    if (snapshot.generation === this.current.generation) return false
    this.current = snapshot
    this.hosts = byKey(snapshot.hosts, (host) => host.host_id)
    this.users = byKey(snapshot.users, (user) => user.name)
    return true
  }

  /** Why the host with this ID is refused now, or undefined when it is not. */
  refusedHost(hostId: string): string | undefined {
    const now = this.now()
    return this.hosts.get(hostId)?.find((entry) => inForce(entry, now))?.reason
  }

  /** Why this user is refused now, or undefined when it is not. */
  refusedUser(name: string): string | undefined {
    const now = this.now()
    return this.users.get(name)?.find((entry) => inForce(entry, now))?.reason
  }
}
