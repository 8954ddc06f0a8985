// The audit log in the backend: append-only, one item per event, on SQLite and etcd alike
// (it uses nothing but the Backend contract). Events are filed by day and time, so a
// listing reads only the days it asks for and comes out in time order; each event's ID has
// an item of its own, written in the same transaction as the event, so an event sent twice
// (a node retrying a batch whose answer it lost) is stored once. Retention removes whole
// days, and the old part of the last one.

import type { AuditEvent, AuditQuery } from '../shared/protocol/audit.ts'
import type { Backend } from './backend/backend.ts'

const EVENTS = '/audit/events/'
const IDS = '/audit/ids/'
const DAYS = '/audit/days/'
const DAY_MS = 86_400_000
// Epoch milliseconds as fixed-width digits, so that key order is time order.
const TIME_DIGITS = 15
/** The most events one listing returns (the newest of those that match). */
export const DEFAULT_LIST_LIMIT = 5000

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

  /** Stores `event`; false (and nothing written) when an event with its ID is already stored. */
  async append(event: AuditEvent): Promise<boolean> {
    const key = eventKey(event)
    const day = dayOf(event.time)
    return this.#backend.txn(
      [{ key: IDS + event.id, absent: true }],
      [
        { op: 'put', key: IDS + event.id, value: key },
        { op: 'put', key: DAYS + day, value: '' },
        { op: 'put', key, value: JSON.stringify(event) },
      ],
    )
  }

  /** Events that match `query`, oldest first; at most `limit`, the newest when more match. */
  async list(query: AuditQuery = {}, limit = DEFAULT_LIST_LIMIT): Promise<{ events: AuditEvent[]; truncated: boolean }> {
    const since = query.since ?? 0
    const until = query.until ?? Number.POSITIVE_INFINITY
    const matches = typeMatcher(query.type)
    const days = (await this.#days()).filter((day) => day >= dayOf(since) && day <= dayOf(Math.min(until, 9e14)))
    const events: AuditEvent[] = []
    for (const day of days) {
      for (const item of await this.#backend.list(`${EVENTS}${day}/`)) {
        const event = JSON.parse(item.value) as AuditEvent
        if (event.time < since || event.time > until || !matches(event.type)) continue
        if (query.user !== undefined && event.user !== query.user && event.actor !== query.user) continue
        if (query.node !== undefined && event.node !== query.node && event.host_id !== query.node) continue
        events.push(event)
      }
    }
    return { events: events.slice(-limit), truncated: events.length > limit }
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
        await this.#backend.txn(
          [],
          [
            { op: 'delete', key: item.key },
            { op: 'delete', key: IDS + event.id },
          ],
        )
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
