// Who the auth server refuses although their certificates are valid: hosts removed with
// `warrenctl nodes rm` (a removal record each) and the targets of locks (locks.ts). The
// view is read from the backend every REFRESH_MS and right after this server changes it,
// so removals and locks made on any auth server sharing the backend hold here too; proxies
// fetch it whenever its generation changes (GET /v1/proxies carries the generation).
//
// A removal record names the host ID and the fingerprint of the TLS key registered at join,
// and is kept until the host's certificate would have expired plus the recovery window:
// until then its certificate, a renewal and a recovery with its key are all refused. After
// that nothing it holds is worth refusing, and the record goes by itself (its TTL).

import type { Logger } from '../shared/log.ts'
import type { RevocationSnapshot } from '../shared/protocol/proxies.ts'
import { RevocationList, type UserCertificate } from '../shared/revocation-list.ts'
import type { Backend, Item, Operation } from './backend/backend.ts'
import { HOST_CERT_TTL_MS } from './issuer.ts'
import { LOCKS, type LockRecord, lockReason, locksCertificates } from './locks.ts'
import type { NodeRecord } from './nodes.ts'
import { USER_CERT_BACKDATE_MS } from './users.ts'

export const REMOVED = '/removed/'

/**
 * How long after its certificate's expiry a device may still recover with the key it
 * registered (a year, as `auth_service.recovery_window` defaults to): a removal record lasts
 * as long, so that such a recovery is refused.
 */
export const DEFAULT_RECOVERY_WINDOW_MS = 365 * 24 * 3600_000

/**
 * How often the view is read again. A removal or lock made on another auth server reaches
 * this one's callers within this, and its proxies within this plus their 1 s poll: inside
 * the 2 s in which every proxy must have closed the tunnels of a removed node.
 */
export const REFRESH_MS = 500

export interface RemovalRecord {
  hostId: string
  nodename: string
  roles: string[]
  /** The registered TLS key's fingerprint: a recovery with this key is refused. */
  tlsKeySha256?: string
  removedAt: number
  /** When the record goes (its certificate's expiry, at the latest, plus the recovery window). */
  keepUntil: number
  /** When the host was last seen before its removal, for `nodes ls --all`. */
  lastSeen?: number
  /** The host that took its name with a token made for it (`warrenctl nodes add --nodename`). */
  replacedBy?: string
}

export interface RevocationsOptions {
  backend: Backend
  recoveryWindowMs: number
  /** The view changed: connections are judged again. */
  onChange: () => void
  log: Logger
  clock?: () => number
}

/** What refuses a removed host: the text the takeover of a name also gives ("not registered"). */
function removalReason(record: RemovalRecord): string {
  const how = record.replacedBy ? `replaced by host ${record.replacedBy}` : 'removed'
  return `host ${record.hostId} is not registered in this cluster: node "${record.nodename}" was ${how} ${new Date(record.removedAt).toISOString()}`
}

export class Revocations {
  readonly list: RevocationList
  private readonly options: RevocationsOptions
  private readonly clock: () => number
  private removals = new Map<string, RemovalRecord>()
  private removedKeys = new Map<string, RemovalRecord>()
  private removedProxies: string[] = []
  private locks: LockRecord[] = []
  /** Reads run one after the other: one asked for after a write starts after it. */
  private reading: Promise<boolean> = Promise.resolve(false)
  private timer?: NodeJS.Timeout

  constructor(options: RevocationsOptions) {
    this.options = options
    this.clock = options.clock ?? Date.now
    this.list = new RevocationList(this.clock)
  }

  /** Reads the view now and then every REFRESH_MS. */
  async start(): Promise<void> {
    await this.refresh()
    this.timer = setInterval(() => {
      this.refresh().catch((error: Error) => this.options.log.warn(`reading the removals and locks failed: ${error.message}`))
    }, REFRESH_MS)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** Reads the removal records and locks; true (and onChange called) when they changed. */
  refresh(): Promise<boolean> {
    const next = this.reading.catch(() => false).then(() => this.read())
    this.reading = next
    return next
  }

  get generation(): string {
    return this.list.generation
  }

  get snapshot(): RevocationSnapshot {
    return this.list.snapshot
  }

  /** The list as proxies get it now: with the time each lock still lasts (RevocationList.served). */
  served(): RevocationSnapshot {
    return this.list.served()
  }

  /** Why this host is refused now (removed, or locked), or undefined. Renewals and recoveries ask this. */
  refusedHost(hostId: string): string | undefined {
    return this.list.refusedHost(hostId)
  }

  /** Why this user, or this certificate of it, is refused now (locked), or undefined. */
  refusedUser(user: string | UserCertificate): string | undefined {
    return this.list.refusedUser(user)
  }

  /** Why a recovery with this TLS key (SHA-256 of its SubjectPublicKeyInfo, hex) is refused, or undefined. */
  refusedKey(tlsKeySha256: string): string | undefined {
    const record = this.removedKeys.get(tlsKeySha256)
    return record ? removalReason(record) : undefined
  }

  /** Whether a lock or a removal record names this host: the offline sweep keeps it then. */
  names(hostId: string): boolean {
    return this.removals.has(hostId) || this.locks.some((lock) => 'hostId' in lock.target && lock.target.hostId === hostId)
  }

  /**
   * The proxies whose certificates are refused now, by host ID: those removed (or replaced),
   * and every host under a lock (a lock names no roles; the list stays short either way).
   */
  refusedProxies(): string[] {
    const now = this.clock()
    const locked = this.locks.flatMap((lock) => ('hostId' in lock.target && (lock.expires ?? Infinity) > now ? [lock.target.hostId] : []))
    return [...new Set([...this.removedProxies, ...locked])]
  }

  get removed(): RemovalRecord[] {
    return [...this.removals.values()]
  }

  /** The node locks in force now, by host ID. */
  nodeLocks(): Map<string, LockRecord> {
    const now = this.clock()
    const locked = new Map<string, LockRecord>()
    for (const lock of this.locks) {
      if ('hostId' in lock.target && (lock.expires === undefined || now < lock.expires)) locked.set(lock.target.hostId, lock)
    }
    return locked
  }

  /** The removal record of `record`, for the removal's transaction. */
  removalOperation(record: NodeRecord, lastSeen?: number, replacedBy?: string): Operation {
    const now = this.clock()
    const certExpires = record.certExpires ?? now + HOST_CERT_TTL_MS
    const keepUntil = Math.max(certExpires, now) + this.options.recoveryWindowMs
    const removal: RemovalRecord = {
      hostId: record.hostId,
      nodename: record.nodename,
      roles: record.roles,
      ...(record.tlsKeySha256 ? { tlsKeySha256: record.tlsKeySha256 } : {}),
      removedAt: now,
      keepUntil,
      ...(lastSeen ? { lastSeen } : {}),
      ...(replacedBy ? { replacedBy } : {}),
    }
    return { op: 'put', key: REMOVED + record.hostId, value: JSON.stringify(removal), ttlMs: keepUntil - now }
  }

  private async read(): Promise<boolean> {
    const removed = await this.options.backend.list(REMOVED)
    const locks = await this.options.backend.list(LOCKS)
    // Revisions grow with every write, so the count and the highest revision change with
    // every put, delete or expiry: the generation proxies compare.
    const generation = generationOf([...removed, ...locks])
    if (generation === this.list.generation) return false
    this.removals = new Map(removed.map((item) => JSON.parse(item.value) as RemovalRecord).map((record) => [record.hostId, record]))
    this.removedKeys = new Map([...this.removals.values()].filter((record) => record.tlsKeySha256).map((record) => [record.tlsKeySha256!, record]))
    // Read once per change, not at every direct node's heartbeat: removal records last a year.
    this.removedProxies = [...this.removals.values()].filter((record) => record.roles.includes('proxy')).map((record) => record.hostId)
    // A lock of a user's logins alone is the auth server's to enforce: certificates and sessions stand.
    this.locks = locks.map((item) => JSON.parse(item.value) as LockRecord).filter(locksCertificates)
    this.list.replace({
      generation,
      hosts: [
        ...[...this.removals.values()].map((record) => ({ host_id: record.hostId, nodename: record.nodename, reason: removalReason(record) })),
        ...this.locks.flatMap((lock) => ('hostId' in lock.target ? [{ host_id: lock.target.hostId, nodename: lock.target.node, reason: lockReason(lock), ...until(lock) }] : [])),
      ],
      users: this.locks.flatMap((lock) => ('user' in lock.target ? [{ name: lock.target.user, reason: lockReason(lock), ...until(lock), ...validFromBefore(lock.target) }] : [])),
    })
    this.options.onChange()
    return true
  }
}

/**
 * A lock on the certificates issued before an instant refuses those whose validity starts
 * before it less the back-dating every user certificate gets (users.ts): in whole seconds,
 * which is why a reset takes the next whole second as its instant (invites.ts). With the
 * user generation it ended, a certificate carrying one is judged by that instead.
 */
function validFromBefore(target: { issuedBefore?: number; generation?: string }): { valid_from_before?: number; generation?: string } {
  if (target.issuedBefore === undefined) return {}
  return { valid_from_before: target.issuedBefore - USER_CERT_BACKDATE_MS, ...(target.generation === undefined ? {} : { generation: target.generation }) }
}

function until(lock: LockRecord): { until?: number } {
  return lock.expires === undefined ? {} : { until: lock.expires }
}

function generationOf(items: Item[]): string {
  return `${items.length}.${items.reduce((highest, item) => Math.max(highest, item.revision), 0)}`
}
