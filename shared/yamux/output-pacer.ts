// Pacing for a session whose connection runs over a slow link: how much output may wait in
// our queue, and how long to hold data back after a drain, from the rate the connection has
// drained at over the last second.
//
// Every stream of a tunnel shares one TCP connection, so a bulk stream's bytes queued ahead
// of a keystroke's echo delay it by their size over the link's rate. So on a slow link our
// own queue is kept to what the link drains in PACED_BACKLOG_MS, and writes are spaced by
// the drain rate, a quarter faster than it (BBR's probing gain) so that a link that got
// faster is found. Above PACING_CEILING nothing is held back: there a segment is a few
// milliseconds, and bulk throughput (`bench:ssh`, `bench:tunnel`) is what counts.
//
// Probing faster than the link fills the kernel's queue, though: the kernel takes writes
// past its unsent limit (shared/unsent-limit.ts, which only decides when it reports the
// socket writable), so a drain's wait came only once its send buffer was full, tens of KB
// behind. So a paced session also pings the peer (QUEUE_PROBE_MS), and a round trip above
// the least of the last BASE_RTT_WINDOW_MS is time our frames wait in the queues on the
// path, the wait a keystroke's echo shares: past QUEUE_TARGET_MS writes stop probing faster,
// and past twice that, or past the target for STANDING_QUEUE_MS, they go slower than the drain
// rate until the queue is under half the target (a delay-based controller, as LEDBAT, RFC
// 6817, and TCP Vegas are). Draining now and then also keeps the base the path's own: a queue
// left standing would become part of it.

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

/** Writes are spaced for this multiple of the drain rate while the queue is short. */
export const PACING_GAIN = 1.25

/** ... and for this one while the queue is past twice QUEUE_TARGET_MS, so that it drains. */
export const DRAINING_GAIN = 0.8

/**
 * How often a paced session whose output moved pings the peer to measure the queue: every
 * 100 ms reacted late enough to leave a keystroke's echo beside a copy clearly longer
 * (`bench:slow-link`, bench/results/2026-12-08-slow-link-delay.md). A ping and its answer are
 * a few dozen bytes, under 1 % of a 2 Mbit/s link.
 */
export const QUEUE_PROBE_MS = 50

/**
 * The queueing delay (round trip above the base) that pacing keeps under, at least: 25 ms
 * left a keystroke's echo beside a copy nearly twice as long, 10 ms gained nothing, the copy
 * at full speed with each (`bench:slow-link`, bench/results/2026-12-08-slow-link-delay.md).
 * On a link whose base round trip is long (a satellite), a quarter of it: such links jitter
 * by more than 15 ms, and each jitter would be taken for a queue and slow the copy.
 */
export const QUEUE_TARGET_MS = 15

/** The base round trip is the least of those measured within this time (a route may change). */
export const BASE_RTT_WINDOW_MS = 10_000

/** A queue past the target for this long is drained even under twice the target. */
export const STANDING_QUEUE_MS = 2000

/**
 * Writes go slower than the drain rate for at most this long at a time. A queue of ours
 * drains in a few hundred ms at DRAINING_GAIN; one that stays is someone else's (other
 * traffic on the link, a peer that does not pace), which going slower would not drain, only
 * starve the tunnel: the rate reached is held instead until the queue is gone or the base
 * round trip takes it in.
 */
export const MAX_DRAINING_MS = 1000

/**
 * A ping's answer waits behind what the peer sends: while it sends in bulk (at least this much
 * came between a ping and its answer), up to twice the target of queue is taken for the
 * peer's own, which it keeps under that if it paces as we do. Without it, copies both ways on
 * one slow link each took the other's queue for their own, and one of them crawled
 * (`bench:slow-link --direction=both`, bench/results/2026-12-08-slow-link-delay.md).
 */
export const PEER_SENDING_BYTES = 1024

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
  /** Round trips measured while paced, oldest first from #rttHead, within BASE_RTT_WINDOW_MS. */
  #rtts: { at: number; ms: number }[] = []
  #rttHead = 0
  /** Time frames now wait in the queues on the path (ms): the last two round trips' least, less the base. */
  #queueMs = 0
  /** Since when the round trips show a queue past the target (0: they do not). */
  #aboveTargetSince = 0
  /** When writes began to go slower than the drain rate to drain a queue (0: no drain under way). */
  #drainingSince = 0
  /** Round trips measured while paced. */
  #roundTrips = 0

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

  /** The queueing delay the last round trips showed, in ms (0 before any). */
  get queueMs(): number {
    return this.#queueMs
  }

  /** Round trips measured while paced. */
  get roundTrips(): number {
    return this.#roundTrips
  }

  /** Whether round trips would change anything: only while writes are spaced. */
  get wantsRoundTrips(): boolean {
    return this.#active && this.#rate < PACING_CEILING
  }

  /**
   * A ping's round trip while paced, `now` the monotonic time in ms; `received` what came from
   * the peer between the ping and its answer. The least of the last two round trips counts, so
   * that one delayed by something else (the peer's event loop, a retransmission) does not slow
   * the output.
   */
  roundTrip(rttMs: number, now: number, received = 0): void {
    if (!this.#active) return
    this.#roundTrips++
    const rtts = this.#rtts
    rtts.push({ at: now, ms: rttMs })
    while (rtts[this.#rttHead]!.at < now - BASE_RTT_WINDOW_MS) this.#rttHead++
    if (this.#rttHead > 256) {
      this.#rtts = rtts.slice(this.#rttHead)
      this.#rttHead = 0
    }
    let base = rttMs
    for (let i = this.#rttHead; i < this.#rtts.length; i++) base = Math.min(base, this.#rtts[i]!.ms)
    const previous = this.#rtts.length - this.#rttHead >= 2 ? this.#rtts[this.#rtts.length - 2]!.ms : rttMs
    this.#queueMs = Math.min(rttMs, previous) - base
    const target = Math.max(QUEUE_TARGET_MS, base / 4)
    const ours = this.#queueMs - (received >= PEER_SENDING_BYTES ? 2 * target : 0)
    if (this.#drainingSince !== 0) {
      // A drain goes on until the queue is under half the target (at most MAX_DRAINING_MS slower).
      if (ours < target / 2) this.#drainingSince = this.#aboveTargetSince = 0
    } else if (ours < target) {
      this.#aboveTargetSince = 0
    } else {
      if (this.#aboveTargetSince === 0) this.#aboveTargetSince = now
      if (ours >= 2 * target || now - this.#aboveTargetSince >= STANDING_QUEUE_MS) this.#drainingSince = now
    }
  }

  /** The multiple of the drain rate writes are spaced for at `now`. */
  #gainAt(now: number): number {
    if (this.#drainingSince !== 0) return now - this.#drainingSince < MAX_DRAINING_MS ? DRAINING_GAIN : 1
    return this.#aboveTargetSince !== 0 ? 1 : PACING_GAIN
  }

  /**
   * The connection took `bytes` in `ms` since output first waited; `now` is the monotonic
   * time in ms. Returns how long to hold data frames back before writing more (0: at once).
   */
  drained(bytes: number, ms: number, now: number): number {
    if (!this.#active) return 0
    const hold = this.#rate < PACING_CEILING ? Math.max(0, bytes / (this.#rate * this.#gainAt(now)) - ms) : 0
    // The hold counts as time the drain took: going slower lowers the rate it is measured from
    // too, which drains the queue faster (counted as held only for the drain rate, a keystroke
    // beside a copy waited about twice as long: `bench:slow-link --direction=to`).
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
