// Locks (`warrenctl lock`): a user or a node refused everywhere until the lock ends or is
// removed, whatever certificates it holds. Each lock is one backend item, with the lock's
// TTL as the item's, so every auth server and (through them) every proxy enforces the same
// set, and an expired lock is gone on every backend at the same millisecond.
//
// A node lock names the host by ID (a name can pass to another host): it is created only
// while that host is registered, in one transaction with that condition.
//
// A user lock may be limited to the certificates issued before an instant (`users reset`
// makes one): those are refused until the last of them has expired, while the user logs in
// and gets new certificates as usual; such a lock (`users reset`, `users rm`) also names the
// user's generation it ended (users.ts), and a certificate that carries a generation is
// refused by that alone, whatever its dates. Or to logins with a password (failed logins make one,
// auth/logins.ts): anyone may try a user's password, so what they set off must not end the
// user's sessions or refuse the certificates the user holds.

import { randomUUID } from 'node:crypto'
import { isoTime } from '../shared/duration.ts'
import type { LockBody } from '../shared/protocol/admin.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import type { Backend } from './backend/backend.ts'
import { type NodeDirectory, registryKey } from './nodes.ts'
import { UnknownUser, type UserDirectory } from './users.ts'

export const LOCKS = '/locks/'
const ROUTE = 'POST /v1/locks'

/**
 * A user (`issuedBefore`, epoch ms: only its certificates issued before then, and with
 * `generation` those that carry it, a certificate that carries another being judged by that
 * alone; `loginsOnly`: only its logins with a password), or a node by host ID.
 */
export type LockTarget = { user: string; issuedBefore?: number; generation?: string; loginsOnly?: true } | { node: string; hostId: string }

export interface LockRecord {
  id: string
  target: LockTarget
  message?: string
  created: number
  /** Epoch ms when the lock ends; absent: when it is removed. */
  expires?: number
}

export interface LockRequest {
  user?: string
  /** With `user`: lock only the certificates issued before this (epoch ms). */
  issuedBefore?: number
  /** With `issuedBefore`: the user generation that ended then (a reset or removal). */
  generation?: string
  /** With `user`: lock only its logins with a password. */
  loginsOnly?: true
  node?: string
  ttlMs?: number
  message?: string
}

/** What a refused caller is told: who is locked, and the admin's message. */
export function lockReason(lock: LockRecord): string {
  const target = lock.target
  const who = !('user' in target)
    ? `node "${target.node}" is`
    : target.loginsOnly
      ? `logins of user "${target.user}" are`
      : target.issuedBefore === undefined
        ? `user "${target.user}" is`
        : `the certificates of user "${target.user}" issued before ${isoTime(target.issuedBefore)} are`
  return `${who} locked${lock.message ? `: ${lock.message}` : ''}`
}

/** `lock ls`'s Target column: `user:alice`, `user:alice (logins)`, `user:alice (certificates issued before TIME)`, `node:pi-1 (HOST_ID)`. */
export function describeTarget(target: LockTarget): string {
  if (!('user' in target)) return `node:${target.node} (${target.hostId})`
  if (target.loginsOnly) return `user:${target.user} (logins)`
  return target.issuedBefore === undefined ? `user:${target.user}` : `user:${target.user} (certificates issued before ${isoTime(target.issuedBefore)})`
}

/** Whether a lock refuses the user itself (its logins, new certificates and the ones it holds), not only some certificates or its logins. */
export function locksWholeUser(lock: LockRecord, user: string): boolean {
  return 'user' in lock.target && lock.target.user === user && lock.target.issuedBefore === undefined && !lock.target.loginsOnly
}

/** Whether a lock refuses the user's logins with a password: a lock of the whole user, or of its logins. */
export function locksLogins(lock: LockRecord, user: string): boolean {
  return 'user' in lock.target && lock.target.user === user && (lock.target.loginsOnly === true || locksWholeUser(lock, user))
}

/** Whether a lock refuses the certificates of a user (all, or those issued before an instant): what proxies and nodes enforce. */
export function locksCertificates(lock: LockRecord): boolean {
  return !('user' in lock.target) || !lock.target.loginsOnly
}

/** No lock with that ID is in force (it may have expired). */
export class LockNotFound extends Error {}

/** The node to lock changed or went while it was being locked. */
export class LockConflict extends Error {}

/** A caller refused by a lock (a user asking for certificates, say), told the lock's message. */
export class Locked extends Error {}

/** Checks what the body's shape cannot: one target, a message on one line; a problem is a ProtocolError naming the field. */
export function parseLockRequest(body: LockBody): LockRequest {
  const { user, node, message } = body
  if ((user === undefined) === (node === undefined))
    throw new ProtocolError(ROUTE, user === undefined ? 'user' : 'node', 'a lock needs exactly one target: field "user" or field "node"')
  if (message !== undefined && /[\u0000-\u001f\u007f]/.test(message)) throw new ProtocolError(ROUTE, 'message', 'field "message" must be one line of printable text')
  return { user, node, ttlMs: body.ttl_ms, message }
}

export interface LocksContext {
  backend: Backend
  nodes: NodeDirectory
  users: UserDirectory
  clock?: () => number
}

export class Locks {
  private readonly context: LocksContext
  private readonly clock: () => number

  constructor(context: LocksContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /**
   * Creates a lock; throws UnknownUser or NodeLookupError for a target that does not exist,
   * LockConflict when a node went meanwhile. `userRemoved`: the user has just been removed,
   * and the lock is on the certificates it was issued.
   */
  async add(request: LockRequest, options: { userRemoved?: boolean } = {}): Promise<LockRecord> {
    const now = this.clock()
    const base = { id: randomUUID(), created: now, ...(request.message ? { message: request.message } : {}), ...(request.ttlMs ? { expires: now + request.ttlMs } : {}) }
    const put = (record: LockRecord) => ({ op: 'put' as const, key: LOCKS + record.id, value: JSON.stringify(record), ...(request.ttlMs ? { ttlMs: request.ttlMs } : {}) })
    if (request.user !== undefined) {
      if (!options.userRemoved && !(await this.context.users.get(request.user))) throw new UnknownUser(`no user "${request.user}": lock a user that "warrenctl users ls" lists`)
      const target = {
        user: request.user,
        ...(request.issuedBefore === undefined ? {} : { issuedBefore: request.issuedBefore }),
        ...(request.issuedBefore === undefined || request.generation === undefined ? {} : { generation: request.generation }),
        ...(request.loginsOnly ? { loginsOnly: true as const } : {}),
      }
      const record: LockRecord = { ...base, target }
      await this.context.backend.txn([], [put(record)])
      return record
    }
    const hostId = await this.context.nodes.resolve(request.node!)
    const registration = await this.context.backend.get(registryKey(hostId))
    if (!registration) throw new LockConflict(`node "${request.node}" was removed meanwhile`)
    const nodename = (JSON.parse(registration.value) as { nodename: string }).nodename
    const record: LockRecord = { ...base, target: { node: nodename, hostId } }
    if (!(await this.context.backend.txn([{ key: registration.key, revision: registration.revision }], [put(record)]))) {
      throw new LockConflict(`node "${request.node}" changed while being locked: try again`)
    }
    return record
  }

  /** The locks in force, oldest first. */
  async list(): Promise<LockRecord[]> {
    const locks = (await this.context.backend.list(LOCKS)).map((item) => JSON.parse(item.value) as LockRecord)
    return locks.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id))
  }

  /**
   * The lock in force on the whole user, as the backend holds it now: what the list each
   * server keeps in memory learns only at its next refresh.
   */
  async onWholeUser(user: string): Promise<LockRecord | undefined> {
    const now = this.clock()
    return (await this.list()).find((lock) => locksWholeUser(lock, user) && (lock.expires ?? Number.POSITIVE_INFINITY) > now)
  }

  /** Ends a lock; throws LockNotFound when there is no such lock (it may have expired). */
  async remove(id: string): Promise<LockRecord> {
    const item = await this.context.backend.get(LOCKS + id)
    if (!item || !(await this.context.backend.txn([{ key: item.key, revision: item.revision }], [{ op: 'delete', key: item.key }]))) {
      throw new LockNotFound(`no lock "${id}" (it may have expired or been removed): "warrenctl lock ls" lists the locks in force`)
    }
    return JSON.parse(item.value) as LockRecord
  }
}
