// Series read from a role's own state at each scrape, rather than counted a second time:
// the roles keep their counts (for the status endpoint as well), and these report them.

import { family, type MetricsRegistry } from './metrics-text.ts'

interface Series {
  name: string
  help: string
}

/** A gauge whose value is `read()` at each scrape; unset (not reported) while it gives undefined. */
export function gaugeOf(registry: MetricsRegistry, series: Series, read: () => number | undefined): void {
  registry.add(() => {
    const value = read()
    return family(series.name, 'gauge', series.help, value === undefined ? [] : [{ value }])
  })
}

/** A gauge with one label, a value per label value, read at each scrape. */
export function labelledGaugeOf(registry: MetricsRegistry, series: Series, label: string, read: () => Record<string, number>): void {
  registry.add(() =>
    family(
      series.name,
      'gauge',
      series.help,
      Object.entries(read()).map(([value, count]) => ({ labels: { [label]: value }, value: count })),
    ),
  )
}

/**
 * A counter with one label whose totals are read at each scrape. `known` label values are
 * reported at 0 before they first happen, so rate() and alerts see them from the start.
 * A total never goes down here (Prometheus would read that as a restart).
 */
export function labelledCounterOf(registry: MetricsRegistry, series: Series, label: string, known: readonly string[], read: () => Record<string, number | undefined>): void {
  const reported = new Map<string, number>(known.map((value) => [value, 0]))
  registry.add(() => {
    for (const [value, count] of Object.entries(read())) reported.set(value, Math.max(reported.get(value) ?? 0, count ?? 0))
    return family(
      series.name,
      'counter',
      series.help,
      [...reported].map(([value, count]) => ({ labels: { [label]: value }, value: count })),
    )
  })
}
