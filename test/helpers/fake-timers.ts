// A clock and timers that move only when a test says so, for code that takes them injected
// (shared/renewal-schedule.ts's Timers): no test waits on real time.

import type { Timers } from '../../shared/renewal-schedule.ts'

export function fakeTimers(start = Date.UTC(2027, 0, 1)) {
  let now = start
  let nextId = 0
  const pending = new Map<number, { at: number; callback: () => void }>()
  const timers: Timers = {
    set: (callback, ms) => {
      pending.set(++nextId, { at: now + ms, callback })
      return nextId
    },
    clear: (handle) => void pending.delete(handle as number),
  }
  /** Runs every timer due up to `until`, in order, letting what each one starts settle. */
  const advanceTo = async (until: number) => {
    for (;;) {
      const [id, next] = [...pending.entries()].sort((a, b) => a[1].at - b[1].at)[0] ?? []
      if (next === undefined || next.at > until) break
      pending.delete(id!)
      now = next.at
      next.callback()
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
    }
    now = until
  }
  /**
   * The wall clock is set by `byMs` (forward, or back when negative) and nothing runs: the
   * timers wait on the monotonic clock, so each pending one now comes `byMs` later by the clock.
   */
  const step = (byMs: number) => {
    now += byMs
    for (const timer of pending.values()) timer.at += byMs
  }
  return { clock: () => now, timers, advanceTo, pending, step }
}
