// Ships the node's queued audit events (audit-queue.ts) to the auth server, one batch at a
// time, oldest first: through a tunnel's proxy in tunnel mode, straight to the auth server
// in direct mode. Events leave the queue only once the auth server has them; a batch that
// fails is sent again after a backoff with jitter (a restarted auth server meets a trickle,
// not the whole fleet at once), and since the auth server de-duplicates by event ID, a
// batch sent twice is stored once. Delivery is at least once.

import { randomUUID } from 'node:crypto'
import { Backoff } from '../shared/backoff.ts'
import type { Logger } from '../shared/log.ts'
import { type AuditValue, MAX_EVENTS_PER_BATCH, MAX_FIELD_LENGTH, type NodeEventType } from '../shared/protocol/audit.ts'
import type { AuditQueue } from './audit-queue.ts'

/** Sends one batch; rejects when the auth server may not have it. `refused` errors are never worth sending again. */
export type AuditTransport = (events: ReturnType<AuditQueue['peek']>) => Promise<void>

export interface AuditSenderOptions {
  queue: AuditQueue
  /** How a batch goes now (tunnel or direct mode), undefined while there is no way. */
  transport: () => { send: AuditTransport; maxBytes: number } | undefined
  /** Whether an error means the auth server will refuse these events however often they are sent. */
  refused: (error: unknown) => boolean
  log: Logger
  clock?: () => number
}

// From a second up to half a minute: an auth server back from a restart hears from every
// node within that, spread over it.
const RETRY_BASE_MS = 1000
const RETRY_CAP_MS = 30_000

export class AuditSender {
  readonly #options: AuditSenderOptions
  readonly #backoff = new Backoff({ baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS })
  #running = false
  #stopped = false
  #timer?: NodeJS.Timeout
  #failing = false

  constructor(options: AuditSenderOptions) {
    this.#options = options
  }

  /** Queues an event the node's SSH server saw, durably, and sends it soon. */
  record(type: NodeEventType, fields: Record<string, AuditValue | undefined>): void {
    const flat: Record<string, AuditValue> = {}
    for (const [name, value] of Object.entries(fields)) {
      if (value === undefined) continue
      // A field the auth server would refuse would block the queue: cut it to size here.
      flat[name] = typeof value === 'string' && value.length > MAX_FIELD_LENGTH ? value.slice(0, MAX_FIELD_LENGTH) : value
    }
    try {
      this.#options.queue.add({ ...flat, id: randomUUID(), time: (this.#options.clock ?? Date.now)(), type })
    } catch (error) {
      // The session goes on; the trail says what it lost.
      this.#options.log.error(`audit event not queued: ${(error as Error).message}`, { type })
      return
    }
    if (!this.#timer) this.kick()
  }

  /** Sends what is queued now (a way to the auth server may just have opened). */
  kick(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    void this.#drain()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  async #drain(): Promise<void> {
    if (this.#running || this.#stopped) return
    this.#running = true
    try {
      const { queue, log } = this.#options
      while (!this.#stopped && queue.size > 0) {
        const way = this.#options.transport()
        if (!way) return this.#retryLater()
        const batch = queue.peek(MAX_EVENTS_PER_BATCH, way.maxBytes)
        try {
          await way.send(batch)
          queue.remove(batch.map((event) => event.id))
          this.#backoff.reset()
          if (this.#failing) log.info('audit events reach the auth server again', { queued: queue.size })
          this.#failing = false
        } catch (error) {
          if (this.#options.refused(error)) {
            log.error(`the auth server refused ${batch.length} audit event(s); they are dropped: ${(error as Error).message}`, { dropped: batch.length })
            queue.discard(batch.map((event) => event.id))
            continue
          }
          if (!this.#failing) log.warn(`audit events not delivered, retrying: ${(error as Error).message}`, { queued: queue.size })
          this.#failing = true
          return this.#retryLater()
        }
      }
    } finally {
      this.#running = false
    }
  }

  #retryLater(): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.#drain()
    }, this.#backoff.next())
  }
}
