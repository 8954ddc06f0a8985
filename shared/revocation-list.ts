// Who the cluster refuses although their certificates are valid: hosts removed with
// `warrenctl nodes rm`, and nodes and users under a lock (`warrenctl lock`). The auth server
// builds the list from its backend; every proxy holds a copy, fetched whenever the list's
// generation changes (the proxies read it with the live set, every second). Both judge with
// the same code: a host by its host ID (the certificate's CN, never reused), a user by name,
// or a user's certificate by name and the start of its validity: `users reset` refuses the
// certificates issued before it, not the ones the user gets afterwards.

import type { X509Certificate } from 'node:crypto'
import { certSubject } from './cert-subject.ts'
import type { RevocationSnapshot, RevokedHost, RevokedUser } from './protocol/proxies.ts'

/** A user certificate as the list judges it: whose it is, and when its validity starts (epoch ms). */
export interface UserCertificate {
  name: string
  validFrom: number
}

/** The user and validity start of an X.509 user certificate (its CN names the user). */
export function userCertificate(cert: X509Certificate): UserCertificate {
  return { name: certSubject(cert).commonName, validFrom: cert.validFromDate.getTime() }
}

export const EMPTY_SNAPSHOT: RevocationSnapshot = { generation: '', hosts: [], users: [] }

function inForce(entry: { until?: number }, nowMs: number): boolean {
  return entry.until === undefined || nowMs < entry.until
}

/** Whether a user entry refuses a certificate valid from `validFrom` (undefined: the user itself, no certificate). */
function covers(entry: RevokedUser, validFrom: number | undefined): boolean {
  if (entry.valid_from_before === undefined) return true
  return validFrom !== undefined && validFrom < entry.valid_from_before
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

  /**
   * Why this user is refused now, or undefined when it is not. Given a certificate, every
   * lock on its user counts, those limited to certificates issued before a reset too; given
   * a name alone (a login, certificates about to be issued), only the locks on the user.
   */
  refusedUser(user: string | UserCertificate): string | undefined {
    const now = this.now()
    const { name, validFrom } = typeof user === 'string' ? { name: user, validFrom: undefined } : user
    return this.users.get(name)?.find((entry) => inForce(entry, now) && covers(entry, validFrom))?.reason
  }

  /** The start of validity (epoch ms) before which this user's certificates are refused now (a `users reset`), or undefined. */
  validFromAtLeast(name: string): number | undefined {
    const now = this.now()
    const starts = (this.users.get(name) ?? []).filter((entry) => inForce(entry, now) && entry.valid_from_before !== undefined).map((entry) => entry.valid_from_before!)
    return starts.length === 0 ? undefined : Math.max(...starts)
  }
}
