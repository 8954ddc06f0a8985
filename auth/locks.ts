// Locks (`warrenctl lock`): a user or a node refused everywhere until the lock ends or is
// removed, whatever certificates it holds. Each lock is one backend item, with the lock's
// TTL as the item's, so every auth server and (through them) every proxy enforces the same
// set, and an expired lock is gone on every backend at the same millisecond.
//
// A node lock names the host by ID (a name can pass to another host): it is created only
// while that host is registered, in one transaction with that condition.

import { randomUUID } from 'node:crypto'
import type { Backend } from './backend/backend.ts'
import { NodeLookupError, registryKey, type NodeDirectory } from './nodes.ts'
import type { UserDirectory } from './users.ts'
import { HttpError, stringField } from '../shared/json-http.ts'

export const LOCKS = '/locks/'

/** The longest lock a TTL may ask for; without a TTL a lock lasts until it is removed. */
const MAX_LOCK_TTL_MS = 10 * 365 * 24 * 3600_000

const MAX_MESSAGE_LENGTH = 256

export type LockTarget = { user: string } | { node: string; hostId: string }

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
  node?: string
  ttlMs?: number
  message?: string
}

/** What a refused caller is told: who is locked, and the admin's message. */
export function lockReason(lock: LockRecord): string {
  const who = 'user' in lock.target ? `user "${lock.target.user}"` : `node "${lock.target.node}"`
  return `${who} is locked${lock.message ? `: ${lock.message}` : ''}`
}

/** `lock ls`'s Target column: `user:alice`, `node:pi-1 (HOST_ID)`. */
export function describeTarget(target: LockTarget): string {
  return 'user' in target ? `user:${target.user}` : `node:${target.node} (${target.hostId})`
}

/** Validates the request body; every problem is a 400 naming the field. */
export function parseLockRequest(body: Record<string, unknown>): LockRequest {
  const user = stringField(body, 'user', { optional: true, max: 64 })
  const node = stringField(body, 'node', { optional: true, max: 253 })
  if ((user === undefined) === (node === undefined)) throw new HttpError(400, 'a lock needs exactly one target: field "user" or field "node"')
  const ttlMs = body.ttl_ms
  if (ttlMs !== undefined && (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > MAX_LOCK_TTL_MS)) {
    throw new HttpError(400, 'field "ttl_ms" must be a positive number of milliseconds, at most 10 years')
  }
  const message = stringField(body, 'message', { optional: true, max: MAX_MESSAGE_LENGTH })
  if (message !== undefined && /[\u0000-\u001f\u007f]/.test(message)) throw new HttpError(400, 'field "message" must be one line of printable text')
  return { user, node, ttlMs: ttlMs as number | undefined, message }
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

  /** Creates a lock; throws HttpError 404 for a target that does not exist, 409 when a node went meanwhile. */
  async add(request: LockRequest): Promise<LockRecord> {
    const now = this.clock()
    const base = { id: randomUUID(), created: now, ...(request.message ? { message: request.message } : {}), ...(request.ttlMs ? { expires: now + request.ttlMs } : {}) }
    const put = (record: LockRecord) => ({ op: 'put' as const, key: LOCKS + record.id, value: JSON.stringify(record), ...(request.ttlMs ? { ttlMs: request.ttlMs } : {}) })
    if (request.user !== undefined) {
      if (!(await this.context.users.get(request.user))) throw new HttpError(404, `no user "${request.user}": lock a user that "warrenctl users ls" lists`)
      const record: LockRecord = { ...base, target: { user: request.user } }
      await this.context.backend.txn([], [put(record)])
      return record
    }
    const hostId = await this.resolveNode(request.node!)
    const registration = await this.context.backend.get(registryKey(hostId))
    if (!registration) throw new HttpError(409, `node "${request.node}" was removed meanwhile`)
    const nodename = (JSON.parse(registration.value) as { nodename: string }).nodename
    const record: LockRecord = { ...base, target: { node: nodename, hostId } }
    if (!(await this.context.backend.txn([{ key: registration.key, revision: registration.revision }], [put(record)]))) {
      throw new HttpError(409, `node "${request.node}" changed while being locked: try again`)
    }
    return record
  }

  /** The locks in force, oldest first. */
  async list(): Promise<LockRecord[]> {
    const locks = (await this.context.backend.list(LOCKS)).map((item) => JSON.parse(item.value) as LockRecord)
    return locks.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id))
  }

  /** Ends a lock; throws HttpError 404 when there is no such lock (it may have expired). */
  async remove(id: string): Promise<LockRecord> {
    const item = await this.context.backend.get(LOCKS + id)
    if (!item || !(await this.context.backend.txn([{ key: item.key, revision: item.revision }], [{ op: 'delete', key: item.key }]))) {
      throw new HttpError(404, `no lock "${id}" (it may have expired or been removed): "warrenctl lock ls" lists the locks in force`)
    }
    return JSON.parse(item.value) as LockRecord
  }

  private async resolveNode(nodeOrId: string): Promise<string> {
    try {
      return await this.context.nodes.resolve(nodeOrId)
    } catch (error) {
      if (error instanceof NodeLookupError) throw new HttpError(404, error.message)
      throw error
    }
  }
}
