// Who the cluster refuses although their certificates are valid: hosts removed with
// `warrenctl nodes rm`, and nodes and users under a lock (`warrenctl lock`). The auth server
// builds the list from its backend; every proxy holds a copy, fetched whenever the list's
// generation changes (the proxies read it with the live set, every second). Both judge with
// the same code: a host by its host ID (the certificate's CN, never reused), a user by name,
// or a user's certificate by name and the user generation it carries (or, issued by an
// earlier version without one, the start of its validity): `users reset` refuses the
// certificates issued before it, not the ones the user gets afterwards.
//
// A lock's end is not compared across machines' clocks: the auth server tells a proxy how
// long each lock still lasts (`remaining_ms`, counted as it answers), and the proxy counts
// that down on its monotonic clock from when the answer arrived, so a lock ends there no
// earlier than at the auth server, whatever the proxy's wall clock says, and still ends
// when the auth server can no longer be reached.

import type { X509Certificate } from 'node:crypto'
import { generationOfX509Certificate } from './access-cert.ts'
import { certSubject } from './cert-subject.ts'
import { REFUSED_GENERATIONS_MAX } from './protocol/dial.ts'
import type { RevocationSnapshot, RevokedHost, RevokedUser } from './protocol/proxies.ts'
import { monotonicMs } from './yamux/clock.ts'

/** A user certificate as the list judges it: whose it is, when its validity starts (epoch ms), and the user generation it carries. */
export interface UserCertificate {
  name: string
  validFrom: number
  generation?: string
}

/** The user, validity start and generation of an X.509 user certificate (its CN names the user). */
export function userCertificate(cert: X509Certificate): UserCertificate {
  const generation = generationOfX509Certificate(cert)
  return { name: certSubject(cert).commonName, validFrom: cert.validFromDate.getTime(), ...(generation === undefined ? {} : { generation }) }
}

/**
 * What a node is told of a user's certificates that the list refuses (shared/protocol/dial.ts),
 * at most REFUSED_GENERATIONS_MAX generations:
 * `validFrom` for those without a generation (and for nodes of an earlier version),
 * `generations` refused, and `generationValidFrom` for those with one (locks made by an auth
 * server of an earlier version, which name no generation).
 */
export interface CertificateCut {
  validFrom?: number
  generations: string[]
  generationValidFrom?: number
}

export const EMPTY_SNAPSHOT: RevocationSnapshot = { generation: '', hosts: [], users: [] }

/** An entry as the list holds it: `ends` on the list's own clock (undefined: no end). */
interface Held<T> {
  entry: T
  ends?: number
}

function inForce(held: { ends?: number }, now: number): boolean {
  return held.ends === undefined || now < held.ends
}

/** Whether a user entry refuses this certificate (undefined: the user itself, no certificate). */
function covers(entry: RevokedUser, cert: Omit<UserCertificate, 'name'> | undefined): boolean {
  if (entry.valid_from_before === undefined) return true
  if (cert === undefined) return false
  // By what the certificate carries where both name a generation: its dates were stamped by the clock of whichever auth server issued it.
  if (entry.generation !== undefined && cert.generation !== undefined) return cert.generation === entry.generation
  return cert.validFrom < entry.valid_from_before
}

function byKey<T>(entries: Held<T>[], key: (entry: T) => string): Map<string, Held<T>[]> {
  const map = new Map<string, Held<T>[]>()
  for (const held of entries) {
    const list = map.get(key(held.entry))
    if (list) list.push(held)
    else map.set(key(held.entry), [held])
  }
  return map
}

/** The list's clock for proxies: monotonic, so that no change of the wall clock ends a lock early. */
export const MONOTONIC = monotonicMs

export class RevocationList {
  private current: RevocationSnapshot = EMPTY_SNAPSHOT
  private hosts = new Map<string, Held<RevokedHost>[]>()
  private users = new Map<string, Held<RevokedUser>[]>()
  private heldHosts: Held<RevokedHost>[] = []
  private heldUsers: Held<RevokedUser>[] = []
  private readonly now: () => number
  private readonly wall: () => number

  /**
   * `now` is the clock ends are counted on; `wall` the wall clock, read only for an entry
   * that has an `until` and no `remaining_ms` (an auth server's own locks; a list from an
   * auth server of an earlier version). The auth server gives both as its wall clock, a
   * proxy MONOTONIC and Date.now.
   */
  constructor(now: () => number = Date.now, wall: () => number = now) {
    this.now = now
    this.wall = wall
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
    // Read once: every entry's remaining time is counted from the moment the list arrived.
    const now = this.now()
    const wall = this.wall()
    const hold = <T extends { until?: number; remaining_ms?: number }>(entry: T): Held<T> => {
      if (entry.remaining_ms !== undefined) return { entry, ends: now + entry.remaining_ms }
      return entry.until === undefined ? { entry } : { entry, ends: now + (entry.until - wall) }
    }
    this.heldHosts = snapshot.hosts.map(hold)
    this.heldUsers = snapshot.users.map(hold)
    this.hosts = byKey(this.heldHosts, (host) => host.host_id)
    this.users = byKey(this.heldUsers, (user) => user.name)
    return true
  }

  /**
   * The list as a proxy is sent it now: every entry that ends says how long it still lasts
   * (`remaining_ms`, never below 0). `until` stays for proxies of an earlier version.
   */
  served(): RevocationSnapshot {
    const now = this.now()
    const remaining = <T>({ entry, ends }: Held<T>): T => (ends === undefined ? entry : { ...entry, remaining_ms: Math.max(0, Math.ceil(ends - now)) })
    return { generation: this.current.generation, hosts: this.heldHosts.map(remaining), users: this.heldUsers.map(remaining) }
  }

  /** Why the host with this ID is refused now, or undefined when it is not. */
  refusedHost(hostId: string): string | undefined {
    const now = this.now()
    return this.hosts.get(hostId)?.find((held) => inForce(held, now))?.entry.reason
  }

  /**
   * Why this user is refused now, or undefined when it is not. Given a certificate, every
   * lock on its user counts, those limited to certificates issued before a reset too; given
   * a name alone (a login, certificates about to be issued), only the locks on the user.
   */
  refusedUser(user: string | UserCertificate): string | undefined {
    const now = this.now()
    const name = typeof user === 'string' ? user : user.name
    const cert = typeof user === 'string' ? undefined : user
    return this.users.get(name)?.find((held) => inForce(held, now) && covers(held.entry, cert))?.entry.reason
  }

  /** What of this user's certificates is refused now by locks on some of them (`users reset`, `users rm`), for a node to judge an SSH certificate by. */
  certificateCut(name: string): CertificateCut {
    const now = this.now()
    const cuts = (this.users.get(name) ?? []).filter((held) => inForce(held, now) && held.entry.valid_from_before !== undefined).map((held) => held.entry)
    const latest = (entries: RevokedUser[]) => (entries.length === 0 ? undefined : Math.max(...entries.map((entry) => entry.valid_from_before!)))
    const validFrom = latest(cuts)
    // Newest first: past the most a node can be told, the older generations are refused by
    // the date of their locks instead (a user reset or removed that often, by automation).
    const named = cuts.filter((entry) => entry.generation !== undefined).sort((a, b) => b.valid_from_before! - a.valid_from_before!)
    const told = named.slice(0, REFUSED_GENERATIONS_MAX)
    // The older are cut at the oldest lock told by name: a whole reset's span of margin for an
    // issuing auth server whose clock ran ahead, and still after the current generation began.
    const olderCut = named.length > REFUSED_GENERATIONS_MAX ? told.at(-1)!.valid_from_before : undefined
    const generationValidFrom = latest([
      ...cuts.filter((entry) => entry.generation === undefined),
      ...(olderCut === undefined ? [] : [{ ...told.at(-1)!, valid_from_before: olderCut }]),
    ])
    return {
      ...(validFrom === undefined ? {} : { validFrom }),
      generations: [...new Set(told.map((entry) => entry.generation!))],
      ...(generationValidFrom === undefined ? {} : { generationValidFrom }),
    }
  }
}
