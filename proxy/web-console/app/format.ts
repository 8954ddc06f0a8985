// How times and durations read on the pages (UTC, as warrenctl prints them).

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** `02 Jan 06 15:04 UTC`, as `warrenctl tokens ls`. */
export function utcTime(ms: number): string {
  const d = new Date(ms)
  const two = (n: number) => String(n).padStart(2, '0')
  return `${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${two(d.getUTCFullYear() % 100)} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())} UTC`
}

/** `3h2m`, `45s`: a span of time, to the second. */
export function duration(ms: number): string {
  let s = Math.max(0, Math.round(ms / 1000))
  const parts: string[] = []
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`)
      s %= size
    }
  }
  if (s > 0 || parts.length === 0) parts.push(`${s}s`)
  return parts.join('')
}

/** `5m ago` or `in 3h`, relative to now. */
export function relative(ms: number, now = Date.now()): string {
  return ms <= now ? `${duration(now - ms)} ago` : `in ${duration(ms - now)}`
}
