// Steps of the system clock: a VM resumed after a pause, a board without a real-time clock
// set by NTP after boot, an admin's `date -s`. Timers run on the monotonic clock, so a wait
// computed from the wall clock (a renewal window, a certificate's expiry) is off by the step
// once it is armed. Every role runs one watch, which compares the two clocks every few
// seconds and tells its holder of a step, in either direction: whatever is timed by the
// wall clock is then timed again by the clock as it reads now.

// Not performance.now(): the `performance` global loads perf_hooks into every agent (bench:footprint).
import { monotonicMs } from './yamux/clock.ts'

/**
 * How often the watch compares the wall clock with the monotonic one: what is timed by the
 * wall clock follows a step within this. Rare enough to cost an idle device nothing.
 */
export const CLOCK_CHECK_MS = 5_000

/** A difference between the two clocks beyond this, over one check, is the clock being set. */
export const CLOCK_STEP_MS = 5_000

export interface ClockWatchOptions {
  /** The wall clock was set: it moved `byMs` against the monotonic clock (negative: back). */
  stepped: (byMs: number) => void
  /** Called after every check. */
  tick?: () => void
  /** For tests: the two clocks. */
  wall?: () => number
  monotonic?: () => number
}

export class ClockWatch {
  private readonly options: ClockWatchOptions
  private readonly wall: () => number
  private readonly monotonic: () => number
  private timer?: NodeJS.Timeout
  private last: { wall: number; mono: number }

  constructor(options: ClockWatchOptions) {
    this.options = options
    this.wall = options.wall ?? Date.now
    this.monotonic = options.monotonic ?? monotonicMs
    this.last = { wall: this.wall(), mono: this.monotonic() }
  }

  start(): void {
    this.last = { wall: this.wall(), mono: this.monotonic() }
    // In the background: the watch alone must not keep the process alive.
    this.timer = setInterval(() => this.check(), CLOCK_CHECK_MS).unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Compares the clocks now (the timer does every CLOCK_CHECK_MS). */
  check(): void {
    const now = { wall: this.wall(), mono: this.monotonic() }
    const step = now.wall - this.last.wall - (now.mono - this.last.mono)
    this.last = now
    if (Math.abs(step) > CLOCK_STEP_MS) this.options.stepped(step)
    this.options.tick?.()
  }
}
