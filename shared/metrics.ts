// Series read from a role's own state at each scrape, rather than counted a second time:
// the roles keep their counts (for the status endpoint as well), and these report them.

import { Counter, Gauge, type Registry } from 'prom-client'

interface Series {
  name: string
  help: string
}

/** A gauge whose value is `read()` at each scrape; unset (not reported) while it gives undefined. */
export function gaugeOf(registry: Registry, series: Series, read: () => number | undefined): Gauge {
  return new Gauge({
    ...series,
    registers: [registry],
    collect() {
      this.reset()
      const value = read()
      if (value !== undefined) this.set(value)
    },
  })
}

/** A gauge with one label, a value per label value, read at each scrape. */
export function labelledGaugeOf(registry: Registry, series: Series, label: string, read: () => Record<string, number>): Gauge<string> {
  return new Gauge({
    ...series,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset()
      for (const [value, count] of Object.entries(read())) this.set({ [label]: value }, count)
    },
  })
}

/**
 * A counter with one label whose totals are read at each scrape. `known` label values are
 * reported at 0 before they first happen, so rate() and alerts see them from the start.
 * A total never goes down here (Prometheus would read that as a restart).
 */
export function labelledCounterOf(registry: Registry, series: Series, label: string, known: readonly string[], read: () => Record<string, number | undefined>): Counter<string> {
  const reported = new Map<string, number>(known.map((value) => [value, 0]))
  return new Counter({
    ...series,
    labelNames: [label],
    registers: [registry],
    collect() {
      for (const [value, count] of Object.entries(read())) reported.set(value, Math.max(reported.get(value) ?? 0, count ?? 0))
      this.reset()
      for (const [value, count] of reported) this.inc({ [label]: value }, count)
    },
  })
}

/** A counter without labels whose total is read at each scrape. */
export function counterOf(registry: Registry, series: Series, read: () => number): Counter {
  let reported = 0
  return new Counter({
    ...series,
    registers: [registry],
    collect() {
      reported = Math.max(reported, read())
      this.reset()
      this.inc(reported)
    },
  })
}
