// The node's audit events waiting for the auth server, on disk so that neither a restart of
// the node nor an auth server that is away loses them. The file is a journal, one JSON line
// per change, each written and fsync'd before the change counts: an event queued, events
// the auth server acknowledged, events dropped to stay within bounds. Opening replays it and
// writes it again with only the waiting events (which also removes a line torn by a crash).
// When the queue is full the oldest events are dropped first, and counted: first the kinds a
// user makes in bulk (sftp, port_forward), so that no flood of them pushes out the events
// that say who logged in and what they ran; and never silently: what was dropped is told to
// the auth server in one `events.dropped` event (counts by type, the sessions and users
// affected), sent ahead of the rest, though never twice in a row while others wait (a flood
// that drops all along would otherwise have only those sent). The journal is written again
// once it grows long (JOURNAL_GROWTH).

import { randomUUID } from 'node:crypto'
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeFileSync } from 'node:fs'
import { writeFileAtomic } from '../shared/files.ts'
import { type FlatNodeEvent, MAX_FIELD_LENGTH } from '../shared/protocol/audit.ts'

/** An event as the node queues and sends it. */
export type QueuedEvent = FlatNodeEvent

export interface AuditQueueOptions {
  /** The journal's path (in the data dir). */
  path: string
  /** Bounds: events beyond either drop the oldest. A device with little storage must not fill it. */
  maxEvents?: number
  maxBytes?: number
  /** Dates the events.dropped events; injected by tests. */
  clock?: () => number
}

/** Room for about a week of a busy device's sessions, in a few MiB of its storage. */
export const DEFAULT_MAX_EVENTS = 10_000
export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024

/**
 * What a user can make many of in a moment (every file operation of an sftp batch, every
 * connection through a forward): dropped before any session.start, session.end or exec,
 * which are one or three a login and say who did what.
 */
const BULK_TYPES: ReadonlySet<string> = new Set(['sftp', 'port_forward'])
export const GAP_TYPE = 'events.dropped'
/** Sessions and users an events.dropped event names, the first affected: enough to tell whose, in a field's 1,024 characters. */
const GAP_NAMES = 20
/**
 * The journal is written again with only what waits once it is this many times the queue's
 * bound: every event adds a line and its delivery another, so a node up for months would
 * otherwise fill its storage, and a journal past 512 MiB cannot even be read back at start.
 */
const JOURNAL_GROWTH = 4
/** The journal is read back at start this much at a time. */
const REPLAY_CHUNK_BYTES = 1024 * 1024
/** Far past any line the queue writes: its longest, a `dropped` line naming a full queue's events, is under 1 MiB. */
const MAX_LINE_BYTES = 16 * 1024 * 1024

/** What was dropped since the last events.dropped event was queued. */
interface Gap {
  count: number
  types: Record<string, number>
  sessions: string[]
  users: string[]
  /** The times of the first and last event dropped. */
  since: number
  until: number
}

type JournalLine =
  | { add: QueuedEvent }
  | { done: string[] }
  | { dropped: string[] }
  /** An events.dropped event queued for what was dropped before it. */
  | { gap: QueuedEvent }
  /** Drops not yet told in an events.dropped event, kept across the journal's rewriting. */
  | { untold: Gap }

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
  readonly #clock: () => number
  /** The events.dropped event waiting, at most one: outside the bounds, never dropped for room. */
  #gapEvent: QueuedEvent | undefined
  /** Drops since #gapEvent was queued, told in the next once it is delivered. */
  #untold: Gap | undefined
  /**
   * An events.dropped event was just delivered: the next waits for a batch of the others to
   * be, so that drops that go on (a flood) do not keep everyone's events from being sent.
   */
  #othersFirst = false
  /**
   * The batch on its way to the auth server (sending): not chosen to drop for room, since it
   * would be counted dropped and then delivered. The bounds may be passed by that one batch.
   */
  #inFlight = new Set<string>()
  /** Events dropped to stay within bounds since the queue was opened. */
  dropped = 0

  constructor(options: AuditQueueOptions) {
    this.path = options.path
    this.#maxEvents = options.maxEvents ?? DEFAULT_MAX_EVENTS
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES
    this.#clock = options.clock ?? Date.now
    if (existsSync(this.path)) forEachLine(this.path, (line) => this.#replay(line))
    this.#rewrite()
    // A crash between a drop and its events.dropped event: queued now.
    this.#tellGap()
  }

  get size(): number {
    return this.#events.size + (this.#gapEvent ? 1 : 0)
  }

  /**
   * Queues `event` durably. Beyond the bounds events are dropped, the bulk kinds first (this
   * one too, when it is one), oldest first, then the others of the user who holds the most,
   * oldest first.
   */
  add(event: QueuedEvent): void {
    const line = journalLine({ add: event })
    const bytes = Buffer.byteLength(line)
    this.#append(line)
    this.#events.set(event.id, { event, bytes })
    this.#bytes += bytes
    const victims: string[] = []
    let freed = 0
    const fits = (more = 0) => this.#events.size - victims.length <= this.#maxEvents && this.#bytes - freed - more <= this.#maxBytes
    for (const [id, queued] of this.#events) {
      if (fits()) break
      if (!BULK_TYPES.has(queued.event.type) || this.#inFlight.has(id)) continue
      victims.push(id)
      freed += queued.bytes
    }
    if (!fits()) freed += this.#dropByHeaviestUser(victims, fits)
    if (victims.length > 0) {
      this.#append(journalLine({ dropped: victims }))
      this.#drop(victims)
      this.#tellGap()
    }
    this.#compactIfLong()
  }

  /**
   * The oldest waiting events of the types `takes` (all by default), at most `count` and
   * about `maxBytes` of them (at least one, when one is of those types). An events.dropped event goes first, alone: the gap is known at once, and an auth
   * server of an earlier version, which refuses the type, refuses nothing else with it.
   */
  peek(count: number, maxBytes: number, takes: (type: string) => boolean = () => true): QueuedEvent[] {
    if (this.#gapEvent) return [this.#gapEvent]
    const batch: QueuedEvent[] = []
    let bytes = 0
    for (const { event, bytes: size } of this.#events.values()) {
      if (!takes(event.type)) continue
      if (batch.length === count || (batch.length > 0 && bytes + size > maxBytes)) break
      batch.push(event)
      bytes += size
    }
    return batch
  }

  /**
   * Past the bulk kinds: the events of the user who holds the most bytes of the queue go first,
   * oldest first, so that one user's many sessions (or commands made long) push out their own
   * events, not another's. Adds to `victims`; returns the bytes freed.
   */
  #dropByHeaviestUser(victims: string[], fits: (freedHere: number) => boolean): number {
    const byUser = new Map<string, { ids: string[]; bytes: number }>()
    for (const [id, { event, bytes }] of this.#events) {
      if (BULK_TYPES.has(event.type) || this.#inFlight.has(id)) continue
      const user = typeof event.user === 'string' ? event.user : ''
      const held = byUser.get(user) ?? { ids: [], bytes: 0 }
      held.ids.push(id)
      held.bytes += bytes
      byUser.set(user, held)
    }
    let freed = 0
    const heaviest = () =>
      [...byUser.values()].reduce<{ ids: string[]; bytes: number } | undefined>(
        (most, held) => (held.ids.length > 0 && (!most || held.bytes > most.bytes) ? held : most),
        undefined,
      )
    for (let held = heaviest(); held && !fits(freed); held = heaviest()) {
      const id = held.ids.shift()!
      const bytes = this.#events.get(id)!.bytes
      victims.push(id)
      held.bytes -= bytes
      freed += bytes
    }
    return freed
  }

  /** These (a batch peeked) are on their way to the auth server, until remove or discard, or the next batch. */
  sending(ids: string[]): void {
    this.#inFlight = new Set(ids)
  }

  /** The auth server has these: they leave the queue for good. */
  remove(ids: string[]): void {
    this.#inFlight.clear()
    const known = ids.filter((id) => this.#has(id))
    if (known.length === 0) return
    this.#othersFirst = known.includes(this.#gapEvent?.id ?? '') && this.#events.size > 0
    this.#append(journalLine({ done: known }))
    this.#forget(known)
    this.#tellGap()
    this.#compactIfLong()
  }

  /** Gives these up unsent (the auth server refuses them): they count as dropped, and are told as such. */
  discard(ids: string[]): void {
    this.#inFlight.clear()
    const known = ids.filter((id) => this.#has(id))
    if (known.length === 0) return
    this.#append(journalLine({ dropped: known }))
    this.#drop(known)
    this.#tellGap()
    this.#compactIfLong()
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

  /** After a change is whole (its lines written, the queue changed): the journal written again if it grew long. */
  #compactIfLong(): void {
    if (this.#length <= JOURNAL_GROWTH * Math.max(this.#maxBytes, 64 * 1024)) return
    try {
      this.#rewrite()
    } catch {
      // No room for the copy (a full disk): the change itself is journalled; tried again at the next.
    }
  }

  /** Writes the journal again with only what waits (atomically: a crash leaves the old one or this), and appends to it from then on. */
  #rewrite(): void {
    const waiting = [...(this.#gapEvent ? [this.#gapEvent] : []), ...[...this.#events.values()].map(({ event }) => event)]
    const lines = waiting.map((event) => journalLine({ add: event }))
    if (this.#untold) lines.push(journalLine({ untold: this.#untold }))
    writeFileAtomic(this.path, lines.join(''))
    // The old one names the file replaced: closed first, and forgotten, so that a failed open
    // leaves the queue closed (its writes refused) rather than writing where no start reads.
    const old = this.#fd
    this.#fd = undefined
    if (old !== undefined) closeSync(old)
    this.#fd = openSync(this.path, 'a', 0o600)
    this.#length = fstatSync(this.#fd).size
  }

  #has(id: string): boolean {
    return this.#events.has(id) || this.#gapEvent?.id === id
  }

  /** Forgets dropped events, counting them and noting them for the next events.dropped event. */
  #drop(ids: string[]): void {
    for (const id of ids) {
      const event = this.#events.get(id)?.event
      // An events.dropped event refused is not told again: an auth server that refuses the type would refuse each telling.
      if (!event) continue
      const gap = (this.#untold ??= { count: 0, types: {}, sessions: [], users: [], since: event.time, until: event.time })
      gap.count++
      gap.types[event.type] = (gap.types[event.type] ?? 0) + 1
      if (typeof event.session_id === 'string' && !gap.sessions.includes(event.session_id) && gap.sessions.length < GAP_NAMES) gap.sessions.push(event.session_id)
      if (typeof event.user === 'string' && !gap.users.includes(event.user) && gap.users.length < GAP_NAMES) gap.users.push(event.user)
      gap.since = Math.min(gap.since, event.time)
      gap.until = Math.max(gap.until, event.time)
    }
    this.dropped += ids.length
    this.#forget(ids)
  }

  /** Queues the events.dropped event for the drops untold, unless one waits still (the next tells what came after it). */
  #tellGap(): void {
    if (!this.#untold || this.#gapEvent || (this.#othersFirst && this.#events.size > 0) || this.#fd === undefined) return
    const event = gapEvent(this.#untold, this.#clock())
    this.#append(journalLine({ gap: event }))
    this.#gapEvent = event
    this.#untold = undefined
  }

  #forget(ids: string[]): void {
    for (const id of ids) {
      if (this.#gapEvent?.id === id) this.#gapEvent = undefined
      const queued = this.#events.get(id)
      if (!queued) continue
      this.#bytes -= queued.bytes
      this.#events.delete(id)
    }
  }

  #replay(line: string): void {
    let entry: JournalLine
    try {
      entry = JSON.parse(line) as JournalLine
    } catch {
      return // empty, or the last line torn by a crash: its change never counted
    }
    if ('add' in entry && entry.add.type === GAP_TYPE) {
      this.#gapEvent = entry.add
    } else if ('add' in entry) {
      const bytes = Buffer.byteLength(journalLine(entry))
      this.#events.set(entry.add.id, { event: entry.add, bytes })
      this.#bytes += bytes
    } else if ('done' in entry) {
      this.#forget(entry.done)
    } else if ('dropped' in entry) {
      this.#drop(entry.dropped)
    } else if ('gap' in entry) {
      this.#gapEvent = entry.gap
      this.#untold = undefined
    } else if ('untold' in entry) {
      this.#untold = entry.untold
    }
  }
}

/** The events.dropped event for `gap`: its fields flat, each within what the auth server takes. */
function gapEvent(gap: Gap, time: number): QueuedEvent {
  const field = (text: string) => text.slice(0, MAX_FIELD_LENGTH)
  return {
    id: randomUUID(),
    time,
    type: GAP_TYPE,
    dropped: gap.count,
    types: field(
      Object.entries(gap.types)
        .map(([type, count]) => `${type}=${count}`)
        .join(','),
    ),
    sessions: field(gap.sessions.join(',')),
    users: field(gap.users.join(',')),
    // One user's or one session's loss is found by `audit ls --user` like their other events.
    ...(gap.users.length === 1 ? { user: gap.users[0]! } : {}),
    ...(gap.sessions.length === 1 ? { session_id: gap.sessions[0]! } : {}),
    since: gap.since,
    until: gap.until,
  }
}

/**
 * Calls `each` with every line of the file at `path`, read a chunk at a time: a journal
 * written by an earlier version may be past what one string can hold (512 MiB). A line past
 * MAX_LINE_BYTES is skipped: no change writes one, and a crash can leave a run of zeros
 * where a file's last blocks were.
 */
function forEachLine(path: string, each: (line: string) => void): void {
  const fd = openSync(path, 'r')
  try {
    // No larger than the file: a 1 MiB buffer, even freed at once, raised glibc's mmap
    // threshold and left an idle agent's malloc heap about 1 MB larger (bench:footprint).
    const chunk = Buffer.allocUnsafe(Math.max(1, Math.min(REPLAY_CHUNK_BYTES, fstatSync(fd).size)))
    // Bytes after the last newline read: a line's start, kept as bytes so a character cut
    // between two chunks is decoded whole.
    let rest = Buffer.alloc(0)
    let skipping = false
    for (let read = readSync(fd, chunk); read > 0; read = readSync(fd, chunk)) {
      let pending = Buffer.concat([rest, chunk.subarray(0, read)])
      for (let newline = pending.indexOf(0x0a); newline >= 0; newline = pending.indexOf(0x0a)) {
        if (!skipping) each(pending.toString('utf8', 0, newline))
        skipping = false
        pending = pending.subarray(newline + 1)
      }
      if (pending.length > MAX_LINE_BYTES) skipping = true
      rest = skipping ? Buffer.alloc(0) : Buffer.from(pending)
    }
    if (rest.length > 0 && !skipping) each(rest.toString('utf8'))
  } finally {
    closeSync(fd)
  }
}

function journalLine(entry: JournalLine): string {
  return `${JSON.stringify(entry)}\n`
}
