// The node's audit events waiting for the auth server, on disk so that neither a restart of
// the node nor an auth server that is away loses them. The file is a journal, one JSON line
// per change, each written and fsync'd before the change counts: an event queued, events
// the auth server acknowledged, events dropped to stay within bounds. Opening replays it and
// writes it again with only the waiting events (which also removes a line torn by a crash).
// When the queue is full the oldest events are dropped first, and counted.

import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { writeFileAtomic } from '../shared/files.ts'
import type { FlatNodeEvent } from '../shared/protocol/audit.ts'

/** An event as the node queues and sends it. */
export type QueuedEvent = FlatNodeEvent

export interface AuditQueueOptions {
  /** The journal's path (in the data dir). */
  path: string
  /** Bounds: events beyond either drop the oldest. A device with little storage must not fill it. */
  maxEvents?: number
  maxBytes?: number
}

/** Room for about a week of a busy device's sessions, in a few MiB of its storage. */
export const DEFAULT_MAX_EVENTS = 10_000
export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024

type JournalLine = { add: QueuedEvent } | { done: string[] } | { dropped: string[] }

export class AuditQueue {
  readonly path: string
  readonly #maxEvents: number
  readonly #maxBytes: number
  /** Waiting events, oldest first, with the size of each as written. */
  readonly #events = new Map<string, { event: QueuedEvent; bytes: number }>()
  #bytes = 0
  /** The journal, open for appending; undefined once closed. */
  #fd: number | undefined
  /** The journal's length after its last whole line. */
  #length = 0
  /** Events dropped to stay within bounds since the queue was opened. */
  dropped = 0

  constructor(options: AuditQueueOptions) {
    this.path = options.path
    this.#maxEvents = options.maxEvents ?? DEFAULT_MAX_EVENTS
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES
    if (existsSync(this.path)) this.#replay(readFileSync(this.path, 'utf8'))
    writeFileAtomic(this.path, [...this.#events.values()].map(({ event }) => journalLine({ add: event })).join(''))
    this.#fd = openSync(this.path, 'a', 0o600)
    this.#length = fstatSync(this.#fd).size
  }

  get size(): number {
    return this.#events.size
  }

  /** Queues `event` durably; the oldest events go first when the queue would exceed its bounds. */
  add(event: QueuedEvent): void {
    const line = journalLine({ add: event })
    const bytes = Buffer.byteLength(line)
    const victims: string[] = []
    let freed = 0
    for (const [id, queued] of this.#events) {
      if (this.#events.size - victims.length < this.#maxEvents && this.#bytes - freed + bytes <= this.#maxBytes) break
      victims.push(id)
      freed += queued.bytes
    }
    if (victims.length > 0) {
      this.#append(journalLine({ dropped: victims }))
      this.#forget(victims)
      this.dropped += victims.length
    }
    this.#append(line)
    this.#events.set(event.id, { event, bytes })
    this.#bytes += bytes
  }

  /** The oldest waiting events, at most `count` and about `maxBytes` of them (always at least one). */
  peek(count: number, maxBytes: number): QueuedEvent[] {
    const batch: QueuedEvent[] = []
    let bytes = 0
    for (const { event, bytes: size } of this.#events.values()) {
      if (batch.length === count || (batch.length > 0 && bytes + size > maxBytes)) break
      batch.push(event)
      bytes += size
    }
    return batch
  }

  /** The auth server has these: they leave the queue for good. */
  remove(ids: string[]): void {
    const known = ids.filter((id) => this.#events.has(id))
    if (known.length === 0) return
    this.#append(journalLine({ done: known }))
    this.#forget(known)
  }

  /** Gives these up unsent (the auth server refuses them): they count as dropped. */
  discard(ids: string[]): void {
    const known = ids.filter((id) => this.#events.has(id))
    if (known.length === 0) return
    this.#append(journalLine({ dropped: known }))
    this.#forget(known)
    this.dropped += known.length
  }

  /** Closes the journal; safe to call again (a second close of the same number could close another file). */
  close(): void {
    const fd = this.#fd
    this.#fd = undefined
    if (fd !== undefined) closeSync(fd)
  }

  #append(line: string): void {
    if (this.#fd === undefined) throw new Error(`the audit queue ${this.path} is closed`)
    const bytes = Buffer.from(line)
    try {
      // Every byte or none: part of a line left by a full disk would join the next line written.
      writeFileSync(this.#fd, bytes)
      fsyncSync(this.#fd)
    } catch (error) {
      try {
        ftruncateSync(this.#fd, this.#length)
      } catch {
        // The torn line stays; replay at the next start drops what does not parse.
      }
      throw error
    }
    this.#length += bytes.length
  }

  #forget(ids: string[]): void {
    for (const id of ids) {
      const queued = this.#events.get(id)
      if (!queued) continue
      this.#bytes -= queued.bytes
      this.#events.delete(id)
    }
  }

  #replay(text: string): void {
    for (const line of text.split('\n')) {
      let entry: JournalLine
      try {
        entry = JSON.parse(line) as JournalLine
      } catch {
        continue // empty, or the last line torn by a crash: its change never counted
      }
      if ('add' in entry) {
        const bytes = Buffer.byteLength(journalLine(entry))
        this.#events.set(entry.add.id, { event: entry.add, bytes })
        this.#bytes += bytes
      } else if ('done' in entry) {
        this.#forget(entry.done)
      } else if ('dropped' in entry) {
        this.#forget(entry.dropped)
        this.dropped += entry.dropped.length
      }
    }
  }
}

function journalLine(entry: JournalLine): string {
  return `${JSON.stringify(entry)}\n`
}
