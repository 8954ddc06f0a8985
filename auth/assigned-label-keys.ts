// `auth_service.assigned_label_keys` is each auth server's own config, but auth servers sharing
// an etcd backend answer one cluster's proxies and admins. Were each to judge by its own list, a
// proxy that polls through a load balancer would see the keys change from one poll to the next
// (and judge its open connections again each time), and a key one server's config forgot would
// let a device's own value for it count through that server. So each auth server records its
// list with its record of itself (auth/auth-servers.ts), and every one of them judges by the
// union of the lists of the live auth servers: a key that any of them keeps for assignments is kept by
// all. A difference is logged and shown in the status (`auth.assigned_label_keys`), for an
// operator to make the configs agree. One auth server alone (SQLite) judges by its own list.

import type { Logger } from '../shared/log.ts'
import { type AssignedLabelKeysStatus, statusTime } from '../shared/status.ts'
import type { AuthServerRecord, AuthServerWatcher } from './auth-servers.ts'

export interface ClusterAssignedKeysOptions {
  /** This server's `auth_service.assigned_label_keys`. */
  own: readonly string[]
  /** Called with the union whenever it changes (and at the first look when it differs from `own`). */
  onChange: (keys: ReadonlySet<string>) => void
  log: Logger
}

/** A peer that records its keys, as the union counts them. */
type PeerKeys = AuthServerRecord & { assigned_label_keys: string[] }

/** Watches the live auth servers (auth/auth-servers.ts) for their `assigned_label_keys`. */
export class ClusterAssignedKeys implements AuthServerWatcher {
  readonly #options: ClusterAssignedKeysOptions
  readonly #own: string[]
  #effective: string[]
  #differing: PeerKeys[] = []
  #lastCheck?: number
  #failing = false

  constructor(options: ClusterAssignedKeysOptions) {
    this.#options = options
    this.#own = [...new Set(options.own)].sort()
    this.#effective = this.#own
  }

  status(): AssignedLabelKeysStatus {
    return {
      own: this.#own,
      effective: this.#effective,
      differing: this.#differing.map((peer) => ({ auth_server_id: peer.id, address: peer.address, hostname: peer.hostname, keys: peer.assigned_label_keys })),
      last_check: this.#lastCheck === undefined ? null : statusTime(this.#lastCheck),
    }
  }

  seen(records: AuthServerRecord[]): void {
    // A server of a version that kept its keys elsewhere neither adds to the union nor differs.
    const peers = records.filter((peer): peer is PeerKeys => peer.assigned_label_keys !== undefined)
    const differing = peers.filter((peer) => !sameKeys(peer.assigned_label_keys, this.#own))
    const effective = [...new Set([...this.#own, ...peers.flatMap((peer) => peer.assigned_label_keys)])].sort()
    this.#lastCheck = Date.now()
    this.#report(differing, effective)
    this.#differing = differing
    if (!sameKeys(effective, this.#effective)) {
      this.#effective = effective
      this.#options.onChange(new Set(effective))
    }
    if (this.#failing) this.#options.log.info('reading the other auth servers’ assigned_label_keys works again')
    this.#failing = false
  }

  /** The union held stays: it never shrinks because the backend did not answer. */
  failed(error: Error): void {
    if (!this.#failing) this.#options.log.warn(`reading the other auth servers’ assigned_label_keys failed: ${error.message}`, { assigned_label_keys: this.#effective })
    this.#failing = true
  }

  /** A WARN when the set of differing peers changes to a non-empty one, an INFO once they all agree again. */
  #report(differing: PeerKeys[], effective: string[]): void {
    const described = (peers: PeerKeys[]) => peers.map((peer) => `${peer.id} ${JSON.stringify(peer.assigned_label_keys)}`).sort()
    const before = described(this.#differing).join('\n')
    const now = described(differing).join('\n')
    if (before === now) return
    const { log } = this.#options
    if (differing.length > 0) {
      log.warn(
        `auth_service.assigned_label_keys ${JSON.stringify(this.#own)} differs from that of ${differing.length} live auth server(s) of this backend: ` +
          `every auth server keeps the keys any of them lists (${JSON.stringify(effective)}); make their configs agree`,
        {
          assigned_label_keys: this.#own,
          assigned_label_keys_effective: effective,
          assigned_label_keys_differing: differing.map((peer) => `${peer.id} ${peer.address} (${peer.hostname}): ${JSON.stringify(peer.assigned_label_keys)}`),
        },
      )
    } else {
      log.info('auth_service.assigned_label_keys is the same on every live auth server of this backend', { assigned_label_keys: this.#own, assigned_label_keys_differing: [] })
    }
  }
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((key, i) => key === b[i])
}
