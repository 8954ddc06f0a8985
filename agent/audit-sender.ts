// Ships the node's queued audit events (audit-queue.ts) to the auth server, one batch at a
// time, oldest first: through a tunnel's proxy in tunnel mode, straight to the auth server
// in direct mode. Events leave the queue only once the auth server has them; a batch that
// fails is sent again after a backoff with jitter (a restarted auth server meets a trickle,
// not the whole fleet at once), and no sooner than a refusal's Retry-After asks; since the
// auth server de-duplicates by event ID, a batch sent twice is stored once. Delivery is at
// least once.

import { randomUUID } from 'node:crypto'
import { serverWaitMs } from '../shared/backoff.ts'
import type { Logger } from '../shared/log.ts'
import { type AuditValue, MAX_EVENTS_PER_BATCH, MAX_FIELD_LENGTH, type NodeEventType } from '../shared/protocol/audit.ts'
import type { AuditQueue } from './audit-queue.ts'
import { RetryingDrain, type SetTimer } from './retrying-drain.ts'

/** Sends one batch; rejects when the auth server may not have it. `refused` errors are never worth sending again. */
export type AuditTransport = (events: ReturnType<AuditQueue['peek']>) => Promise<void>

export interface AuditSenderOptions {
  queue: AuditQueue
  /** How a batch goes now (tunnel or direct mode), undefined while there is no way. */
  /** `takes`: which event types the way takes (all by default); the others wait for another. */
  transport: () => { send: AuditTransport; maxBytes: number; takes?: (type: string) => boolean } | undefined
  /** Whether an error means the auth server will refuse these events however often they are sent. */
  refused: (error: unknown) => boolean
  log: Logger
  clock?: () => number
  /** How retries are timed; tests inject it with the clock. */
  setTimer?: SetTimer
}

// From a second up to half a minute: an auth server back from a restart hears from every
// node within that, spread over it.
const RETRY_BASE_MS = 1000
const RETRY_CAP_MS = 30_000

export class AuditSender {
  readonly #options: AuditSenderOptions
  readonly #drain: RetryingDrain
  #failing = false

  constructor(options: AuditSenderOptions) {
    this.#options = options
    this.#drain = new RetryingDrain(() => this.#sendQueued(), { baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS, clock: options.clock, setTimer: options.setTimer })
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
    if (!this.#drain.retryPending) this.kick()
  }

  /** Sends what is queued now (a way to the auth server may just have opened). */
  kick(): void {
    this.#drain.kick()
  }

  stop(): void {
    this.#drain.stop()
  }

  /** Batches until the queue is empty; false when the rest must wait for a retry. */
  async #sendQueued(): Promise<boolean> {
    const { queue, log } = this.#options
    while (!this.#drain.stopped && queue.size > 0) {
      const way = this.#options.transport()
      if (!way) return false
      const batch = queue.peek(MAX_EVENTS_PER_BATCH, way.maxBytes, way.takes)
      // Nothing this way takes: the rest waits for another way (a proxy of this version).
      if (batch.length === 0) return false
      queue.sending(batch.map((event) => event.id))
      try {
        await way.send(batch)
        queue.remove(batch.map((event) => event.id))
        this.#drain.delivered()
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
        // Over its budget (429): the batch stays queued, and goes again only once the auth server said it fits.
        const wait = serverWaitMs(error)
        if (wait !== undefined) this.#drain.waitAtLeast(wait)
        return false
      }
    }
    return true
  }
}
