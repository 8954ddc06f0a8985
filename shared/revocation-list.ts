// Who the cluster refuses although their certificates are valid: hosts removed with
// `warrenctl nodes rm`, and nodes and users under a lock (`warrenctl lock`). The auth server
// builds the list from its backend; every proxy holds a copy, fetched whenever the list's
// generation changes (the proxies read it with the live set, every second). Both judge with
// the same code: a host by its host ID (the certificate's CN, never reused), a user by name.

/** A refused host: removed (no end), or locked (until the lock ends, when it has one). */
export interface RevokedHost {
  host_id: string
  nodename: string
  reason: string
  /** Epoch ms from which the refusal no longer holds. */
  until?: number
}

/** A locked user. */
export interface RevokedUser {
  name: string
  reason: string
  until?: number
}

/** The list as the auth server hands it to proxies (GET /v1/proxies/revocations). */
export interface RevocationSnapshot {
  /** Changes whenever the list changes: proxies fetch the list again only then. */
  generation: string
  hosts: RevokedHost[]
  users: RevokedUser[]
}

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

/**
 * A snapshot read from the network: entries that are not well formed are dropped, so that a
 * proxy never judges by half an entry.
 */
export function parseSnapshot(value: unknown): RevocationSnapshot | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const body = value as Record<string, unknown>
  if (typeof body.generation !== 'string' || !Array.isArray(body.hosts) || !Array.isArray(body.users)) return undefined
  const until = (entry: Record<string, unknown>) => (typeof entry.until === 'number' ? { until: entry.until } : {})
  const records = (list: unknown[]) => list.filter((entry): entry is Record<string, unknown> => typeof entry === 'object' && entry !== null && typeof (entry as Record<string, unknown>).reason === 'string')
  return {
    generation: body.generation,
    hosts: records(body.hosts)
      .filter((entry) => typeof entry.host_id === 'string')
      .map((entry) => ({ host_id: entry.host_id as string, nodename: typeof entry.nodename === 'string' ? entry.nodename : '', reason: entry.reason as string, ...until(entry) })),
    users: records(body.users)
      .filter((entry) => typeof entry.name === 'string')
      .map((entry) => ({ name: entry.name as string, reason: entry.reason as string, ...until(entry) })),
  }
}
