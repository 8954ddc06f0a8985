// The audit log in the backend: append-only, one item per event, on SQLite and etcd alike
// (it uses nothing but the Backend contract). Events are filed by day and time, so a
// listing reads only the days it asks for and comes out in time order; each event's ID has
// an item of its own, written in the same transaction as the event, so an event sent twice
// (a node retrying a batch whose answer it lost) is stored once. Retention removes whole
// days, and the old part of the last one. A session.start event also files who the session
// was under its node and session ID, so that finding a session's owner reads one item.

import type { AuditEvent, AuditQuery } from '../shared/protocol/audit.ts'
import type { Backend, Operation } from './backend/backend.ts'

const EVENTS = '/audit/events/'
const IDS = '/audit/ids/'
const DAYS = '/audit/days/'
const SESSIONS = '/audit/sessions/'
const DAY_MS = 86_400_000
// Epoch milliseconds as fixed-width digits, so that key order is time order.
const TIME_DIGITS = 15
/** The most events one listing returns (the newest of those that match). */
export const DEFAULT_LIST_LIMIT = 5000
/**
 * And the most bytes of them, as stored: 5,000 honest events take 1 to 8 MB, so this binds
 * only on outsized ones (a node's of 112 KB each, stored before they were bounded at 8 KiB:
 * 3,300 of them made an answer past the API client's 256 MiB, and `audit ls` failed for a
 * day). Well within that limit, and what the web console's page can show.
 */
export const DEFAULT_LIST_BYTES = 32 * 1024 * 1024

export interface AuditLogOptions {
  backend: Backend
  /** How long events are kept. */
  retentionMs: number
  /** Epoch milliseconds; injected so tests can move time. */
  clock?: () => number
}

export class AuditLog {
  readonly #backend: Backend
  readonly #retentionMs: number
  readonly #clock: () => number

  constructor(options: AuditLogOptions) {
    this.#backend = options.backend
    this.#retentionMs = options.retentionMs
    this.#clock = options.clock ?? Date.now
  }

  /**
   * Stores `event`, and `alongside` in the same transaction; false (and nothing written)
   * when an event with its ID is already stored.
   */
  async append(event: AuditEvent, alongside: Operation[] = []): Promise<boolean> {
    const key = eventKey(event)
    const day = dayOf(event.time)
    const session = sessionKey(event)
    const owner: Operation[] = session ? [{ op: 'put', key: session, value: JSON.stringify({ user: stringOrNull(event.user), login: stringOrNull(event.login) }) }] : []
    return this.#backend.txn(
      [{ key: IDS + event.id, absent: true }],
      [{ op: 'put', key: IDS + event.id, value: key }, { op: 'put', key: DAYS + day, value: '' }, { op: 'put', key, value: JSON.stringify(event) }, ...owner, ...alongside],
    )
  }

  /** Who a session of the node `hostId` was and as which login, from its session.start event; undefined when none is kept. */
  async sessionOwner(hostId: string, sessionId: string): Promise<{ user: string | null; login: string | null } | undefined> {
    const item = await this.#backend.get(sessionKey({ type: 'session.start', host_id: hostId, session_id: sessionId })!)
    return item ? (JSON.parse(item.value) as { user: string | null; login: string | null }) : undefined
  }

  /** Events that match `query`, oldest first; at most `limit` and about `maxBytes` (at least one), the newest when more match. */
  async list(query: AuditQuery = {}, limit = DEFAULT_LIST_LIMIT, maxBytes = DEFAULT_LIST_BYTES): Promise<{ events: AuditEvent[]; truncated: boolean }> {
    const since = query.since ?? 0
    const until = query.until ?? Number.POSITIVE_INFINITY
    const matches = typeMatcher(query.type)
    const days = (await this.#days()).filter((day) => day >= dayOf(since) && day <= dayOf(Math.min(until, 9e14)))
    // Newest first, stopping at the first match past `limit` or `maxBytes`: that one says the
    // listing is truncated, and the older days are never read.
    const newestFirst: AuditEvent[] = []
    let bytes = 0
    let truncated = false
    scan: for (const day of days.reverse()) {
      for (const item of (await this.#backend.list(`${EVENTS}${day}/`)).reverse()) {
        const event = JSON.parse(item.value) as AuditEvent
        if (event.time < since || event.time > until || !matches(event.type)) continue
        if (query.user !== undefined && event.user !== query.user && event.actor !== query.user) continue
        if (query.node !== undefined && event.node !== query.node && event.host_id !== query.node) continue
        bytes += Buffer.byteLength(item.value)
        if (newestFirst.length === limit || (newestFirst.length > 0 && bytes > maxBytes)) {
          truncated = true
          break scan
        }
        newestFirst.push(event)
      }
    }
    return { events: newestFirst.reverse(), truncated }
  }

  /** Removes the events older than the retention period; returns how many went. */
  async purge(): Promise<number> {
    const cutoff = this.#clock() - this.#retentionMs
    let removed = 0
    for (const day of await this.#days()) {
      if (day > dayOf(cutoff)) break
      const whole = day < dayOf(cutoff)
      for (const item of await this.#backend.list(`${EVENTS}${day}/`)) {
        const event = JSON.parse(item.value) as AuditEvent
        if (!whole && event.time >= cutoff) continue
        const session = sessionKey(event)
        await this.#backend.txn([], [{ op: 'delete', key: item.key }, { op: 'delete', key: IDS + event.id }, ...(session ? [{ op: 'delete' as const, key: session }] : [])])
        removed++
      }
      if (whole) await this.#backend.delete(DAYS + day)
    }
    return removed
  }

  async #days(): Promise<string[]> {
    return (await this.#backend.list(DAYS)).map((item) => item.key.slice(DAYS.length))
  }
}

function eventKey(event: AuditEvent): string {
  return `${EVENTS}${dayOf(event.time)}/${String(Math.floor(event.time)).padStart(TIME_DIGITS, '0')}-${event.id}`
}

/** Where a session.start event files its session's owner: under the node that sent it, so one node cannot name another's. */
function sessionKey(event: Pick<AuditEvent, 'type'> & Record<string, unknown>): string | undefined {
  if (event.type !== 'session.start' || typeof event.host_id !== 'string' || typeof event.session_id !== 'string') return undefined
  return `${SESSIONS}${encodeURIComponent(event.host_id)}/${encodeURIComponent(event.session_id)}`
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null
}

/** The UTC day of an epoch time, as digits that sort in time order (days since 1970). */
function dayOf(time: number): string {
  return String(Math.floor(time / DAY_MS)).padStart(6, '0')
}

/** A type or a glob where `*` stands for any run of characters: `session.*`, `*.removed`. */
export function typeMatcher(pattern: string | undefined): (type: string) => boolean {
  if (pattern === undefined || pattern === '' || pattern === '*') return () => true
  const regex = new RegExp(`^${pattern.split('*').map(escapeRegex).join('.*')}$`)
  return (type) => regex.test(type)
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
