// Pacing for a session whose connection runs over a slow link: how much output may wait in
// our queue, and how long to hold data back after a drain, from the rate the connection has
// drained at over the last second.
//
// Every stream of a tunnel shares one TCP connection, so a bulk stream's bytes queued ahead
// of a keystroke's echo delay it by their size over the link's rate. The kernel's own queue
// is kept short (shared/unsent-limit.ts), but it still takes one whole GSO segment (up to
// 64 KiB) at a time while its unsent bytes are under that limit: written back to back, a
// queue of 16 KiB writes would be taken four at a time. So on a slow link writes are spaced
// by the drain rate, a quarter faster than it (BBR's probing gain) so that a link that got
// faster is found, and the kernel's queue stays near its limit rather than a segment past it
// (`npm run bench:slow-link`). Above PACING_CEILING nothing is held back: there a segment
// is a few milliseconds, and bulk throughput (`bench:ssh`, `bench:tunnel`) is what counts.

/** Only so much output waits as the link drains in this time. */
export const PACED_BACKLOG_MS = 10

/**
 * The least output allowed to wait once the link's rate is known: at 2 Mbit/s 4 KiB is 16 ms
 * of the link that a keystroke's echo may wait behind (`bench:slow-link`: 16 KiB, a full TLS
 * record, kept it 60 ms longer).
 */
export const MIN_BACKLOG_BYTES = 4 * 1024

/**
 * What may wait while no drain has told of the link yet (it may be fast: a slow reader can
 * have a fast tunnel paced): one TLS record, so that writes stay full-sized.
 */
export const UNKNOWN_LINK_BACKLOG_BYTES = 16 * 1024

/** The drain rate is that of the drains within this last stretch of time. */
const RATE_WINDOW_MS = 1000

/**
 * A drain this long tells of the link. Shorter ones only say that the kernel had room (it
 * takes up to a GSO segment at once, whatever the link's speed) or that our own event loop
 * was busy for a moment; at PACING_CEILING a 64 KiB segment drains in 6.5 ms, so links slow
 * enough to pace still show.
 */
const LINK_DRAIN_MS = 20

/** Drain rate (bytes per ms: 10 MB/s, 80 Mbit/s) from which writes are not spaced. */
export const PACING_CEILING = 10_000

/** Writes are spaced for this multiple of the drain rate. */
export const PACING_GAIN = 1.25

interface Drain {
  /** When it ended, with the hold that followed it. */
  at: number
  bytes: number
  ms: number
}

export class OutputPacer {
  readonly #maxBacklog: number
  /** The drains within the window, oldest first from #head; with their sums. */
  #drains: Drain[] = []
  #head = 0
  #windowBytes = 0
  #windowMs = 0
  #linkDrains = 0
  /** Bytes per ms over the drains in the window; Infinity while none of them told of the link. */
  #rate = Number.POSITIVE_INFINITY
  #active = false

  /** `maxBacklog`: what may wait on a fast link (the session's usual write backlog). */
  constructor(maxBacklog: number) {
    this.#maxBacklog = maxBacklog
  }

  /**
   * Whether the limit and the spacing apply. Until then nothing is measured either: a link
   * found slow is paced once its kernel queue is short, and a fast one never pays for it.
   */
  get active(): boolean {
    return this.#active
  }

  /** Paces from now on, measuring drains from the first one after this. */
  activate(): void {
    this.#active = true
  }

  /** Output that may wait in the connection's buffer before data frames wait for a drain. */
  get backlogLimit(): number {
    if (!this.#active) return this.#maxBacklog
    // Until a drain tells of the link: little, so that drains come (and no more waits than that).
    if (!Number.isFinite(this.#rate)) return UNKNOWN_LINK_BACKLOG_BYTES
    return Math.round(Math.min(this.#maxBacklog, Math.max(MIN_BACKLOG_BYTES, this.#rate * PACED_BACKLOG_MS)))
  }

  /** The drain rate in bytes per ms (Infinity while no drain in the window told of the link). */
  get rate(): number {
    return this.#rate
  }

  /**
   * The connection took `bytes` in `ms` since output first waited; `now` is the monotonic
   * time in ms. Returns how long to hold data frames back before writing more (0: at once).
   */
  drained(bytes: number, ms: number, now: number): number {
    if (!this.#active) return 0
    const hold = this.#rate < PACING_CEILING ? Math.max(0, bytes / (this.#rate * PACING_GAIN) - ms) : 0
    this.#add({ at: now + hold, bytes, ms: ms + hold }, 1)
    const drains = this.#drains
    while (drains[this.#head]!.at < now - RATE_WINDOW_MS) this.#add(drains[this.#head++]!, -1)
    // Drop what has left the window now and then, not at every drain (a fast link has thousands a second).
    if (this.#head > 1024 && this.#head * 2 > drains.length) {
      this.#drains = drains.slice(this.#head)
      this.#head = 0
    }
    this.#rate = this.#linkDrains > 0 ? this.#windowBytes / this.#windowMs : Number.POSITIVE_INFINITY
    return hold
  }

  /** A drain into (sign 1) or out of (-1) the window and its sums. */
  #add(drain: Drain, sign: 1 | -1): void {
    if (sign === 1) this.#drains.push(drain)
    this.#windowBytes += sign * drain.bytes
    this.#windowMs += sign * drain.ms
    if (drain.ms >= LINK_DRAIN_MS) this.#linkDrains += sign
  }
}
