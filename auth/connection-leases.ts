// Connection leases: the role option max_connections, the most connections (SSH, forwarded
// ports) a user may hold at once through all the cluster's proxies. A proxy takes a lease from the auth
// server before it lets a user's connection through, renews the leases it holds while their
// connections last, and releases each when its connection ends; a lease not renewed ends by
// itself, so a proxy that dies frees its users' slots within LEASE_TTL_MS. (Teleport's
// semaphores, kept in its backend, do the same.)
//
// One backend record per user holds that user's leases. Every change of it is a transaction
// conditional on the record's revision as read (or on its absence), retried when another
// auth server or request changed it in between: of two proxies racing for a user's last
// slot, exactly one wins, on SQLite as on etcd.

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { CONNECTION_LEASE_TTL_MS } from '../shared/protocol/proxies.ts'
import type { Backend, Condition, Item, Operation } from './backend/backend.ts'

export const CONNECTION_LEASES = '/connection-leases/'

/** How long a lease lasts unless it is renewed: the protocol's word, which proxies renew by. */
export const LEASE_TTL_MS = CONNECTION_LEASE_TTL_MS

/**
 * The lifetime of a user's record after its last write: the backend drops the record of a
 * user whose leases all ended without being released (their proxies died), even if no
 * acquire ever reads it again. Twice LEASE_TTL_MS, so it outlives every lease written with
 * it (each ends LEASE_TTL_MS after the write).
 */
export const RECORD_TTL_MS = 2 * LEASE_TTL_MS

/**
 * How many times a change of one user's record is tried when other writers keep changing
 * the record between its read and its write. Each lost race means another writer's change
 * committed, so with fewer racers than this every change commits; past it the request fails
 * (a 500, which proxies treat as any failure of the auth server). 32: far more proxies than
 * a cluster has racing for one user at the same instant.
 */
export const MAX_ATTEMPTS = 32

/**
 * The longest wait, in ms, before trying again after a lost race: a random wait up to this
 * spreads the racers, so that they do not collide again at once. 20 ms: a few round trips
 * to the backend, short beside an SSH handshake.
 */
export const RETRY_JITTER_MS = 20

/** The user holds as many connections as its roles allow: the proxy refuses the new one (409). */
export class ConnectionLimitReached extends Error {
  readonly user: string
  readonly max: number
  readonly held: number

  constructor(user: string, max: number, held: number) {
    super(`user "${user}" holds ${held} connection${held === 1 ? '' : 's'}, the most the roles allow (max_connections ${max})`)
    this.user = user
    this.max = max
    this.held = held
  }
}

/** One lease: the proxy that holds it, and when it ends unless renewed (epoch ms). */
export interface LeaseEntry {
  proxy: string
  expires: number
}

/** A user's record: its leases by ID. */
export interface LeaseRecord {
  leases: Record<string, LeaseEntry>
}

/** A lease as a proxy names it when it renews or releases it. */
export interface LeaseRef {
  user: string
  lease_id: string
}

export interface ConnectionLeasesOptions {
  backend: Backend
  /** Epoch ms; tests move it on to expire leases. */
  clock?: () => number
}

/** The key of a user's record (the name escaped, so that no name reaches another's key). */
export function leaseKey(user: string): string {
  return CONNECTION_LEASES + encodeURIComponent(user)
}

/** The record's leases as stored, or none when it is absent or not one of ours. */
function parseRecord(item: Item | undefined): Record<string, LeaseEntry> {
  if (!item) return {}
  try {
    const leases = (JSON.parse(item.value) as Partial<LeaseRecord>).leases
    if (!leases || typeof leases !== 'object') return {}
    return Object.fromEntries(Object.entries(leases).filter(([, lease]) => lease && typeof lease.proxy === 'string' && typeof lease.expires === 'number'))
  } catch {
    return {}
  }
}

/** What a change of a user's record makes of its live leases: the leases to write, and the result. */
type Change<T> = (live: Record<string, LeaseEntry>, now: number) => { leases: Record<string, LeaseEntry>; result: T; unchanged?: boolean }

export class ConnectionLeases {
  private readonly backend: Backend
  private readonly clock: () => number

  constructor(options: ConnectionLeasesOptions) {
    this.backend = options.backend
    this.clock = options.clock ?? Date.now
  }

  /**
   * A lease on one of the user's `max` connections at once, held by `proxyId`; refused with
   * ConnectionLimitReached when the user's live leases number `max` already.
   */
  async acquire(user: string, max: number, proxyId: string): Promise<{ leaseId: string; expires: number }> {
    return this.change(user, (live, now) => {
      const held = Object.keys(live).length
      if (held >= max) throw new ConnectionLimitReached(user, max, held)
      const leaseId = randomUUID()
      const expires = now + LEASE_TTL_MS
      return { leases: { ...live, [leaseId]: { proxy: proxyId, expires } }, result: { leaseId, expires } }
    })
  }

  /**
   * Extends, to LEASE_TTL_MS from now, those of `leases` that are still live and held by
   * `proxyId`, and returns their IDs; the others (ended, unknown, another proxy's) are left
   * as they are. One transaction per user.
   */
  async renew(proxyId: string, leases: LeaseRef[]): Promise<{ renewed: string[]; expires: number }> {
    const expires = this.clock() + LEASE_TTL_MS
    const renewed = await Promise.all(
      [...byUser(leases)].map(([user, ids]) =>
        this.change(user, (live) => {
          const mine = [...ids].filter((id) => live[id]?.proxy === proxyId)
          const next = { ...live }
          for (const id of mine) next[id] = { proxy: proxyId, expires }
          return { leases: next, result: mine, unchanged: mine.length === 0 }
        }),
      ),
    )
    return { renewed: renewed.flat(), expires }
  }

  /** Ends those of `leases` that `proxyId` holds (their connections ended): their slots are free at once. */
  async release(proxyId: string, leases: LeaseRef[]): Promise<void> {
    await Promise.all(
      [...byUser(leases)].map(([user, ids]) =>
        this.change(user, (live) => {
          const mine = [...ids].filter((id) => live[id]?.proxy === proxyId)
          const next = { ...live }
          for (const id of mine) delete next[id]
          return { leases: next, result: undefined, unchanged: mine.length === 0 }
        }),
      ),
    )
  }

  /** The user's live leases (for tests and diagnostics). */
  async held(user: string): Promise<Record<string, LeaseEntry>> {
    const now = this.clock()
    return Object.fromEntries(Object.entries(parseRecord(await this.backend.get(leaseKey(user)))).filter(([, lease]) => lease.expires > now))
  }

  /**
   * Reads the user's record, drops its ended leases, applies `apply` and writes the result
   * (deletes the record when no lease is left) on condition that nobody wrote it meanwhile;
   * tries again from the read when somebody did. Writes nothing when `apply` changes nothing
   * and no lease ended.
   */
  private async change<T>(user: string, apply: Change<T>): Promise<T> {
    const key = leaseKey(user)
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const item = await this.backend.get(key)
      const now = this.clock()
      const stored = parseRecord(item)
      const live = Object.fromEntries(Object.entries(stored).filter(([, lease]) => lease.expires > now))
      const { leases, result, unchanged } = apply(live, now)
      const expired = Object.keys(live).length < Object.keys(stored).length
      if (unchanged && !expired) return result
      if (!item && Object.keys(leases).length === 0) return result
      const condition: Condition = item ? { key, revision: item.revision } : { key, absent: true }
      const operation: Operation =
        Object.keys(leases).length === 0 ? { op: 'delete', key } : { op: 'put', key, value: JSON.stringify({ leases } satisfies LeaseRecord), ttlMs: RECORD_TTL_MS }
      if (await this.backend.txn([condition], [operation])) return result
      await sleep(Math.random() * RETRY_JITTER_MS)
    }
    throw new Error(`the connection leases of user "${user}" changed under ${MAX_ATTEMPTS} writes in a row`)
  }
}

/** The lease IDs by user, each once. */
function byUser(leases: LeaseRef[]): Map<string, Set<string>> {
  const users = new Map<string, Set<string>>()
  for (const { user, lease_id } of leases) {
    let ids = users.get(user)
    if (!ids) users.set(user, (ids = new Set()))
    ids.add(lease_id)
  }
  return users
}
