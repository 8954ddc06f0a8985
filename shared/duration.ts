// Durations as people type them on the command line and in the config: Go's notation, as
// Teleport uses it (`30s`, `5m`, `1h30m`, `250ms`). Days are left out on purpose: they are
// ambiguous across DST changes and Go refuses them, so Teleport users never type them.

import { UsageError } from './errors.ts'

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }

// `ms` must come before `m` so that `250ms` is not read as 250 minutes followed by junk.
const PART = /(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)/y

/**
 * Milliseconds in a Go-style duration. `what` names where the text came from (`--ttl`) so
 * the error can point at it. Zero and negative durations are refused: every duration Warren
 * reads is a lifetime or an interval, where zero makes no sense.
 */
export function parseDuration(text: string, what?: string): number {
  const where = what ? ` for ${what}` : ''
  const invalid = () => new UsageError(`invalid duration ${JSON.stringify(text)}${where}: use a number with a unit, e.g. 30s, 5m, 1h`)

  const trimmed = text.trim()
  if (trimmed.startsWith('-')) {
    throw new UsageError(`invalid duration ${JSON.stringify(text)}${where}: must be more than zero`)
  }
  const body = trimmed.startsWith('+') ? trimmed.slice(1) : trimmed
  if (body === '') throw invalid()

  let total = 0
  PART.lastIndex = 0
  while (PART.lastIndex < body.length) {
    const match = PART.exec(body)
    if (!match) throw invalid()
    total += Number(match[1]) * UNIT_MS[match[2]]
  }
  total = Math.round(total)
  if (!Number.isSafeInteger(total)) throw invalid()
  if (total <= 0) {
    throw new UsageError(`invalid duration ${JSON.stringify(text)}${where}: must be more than zero`)
  }
  return total
}

/**
 * Go's compact form, truncated to whole seconds: `45s`, `29m59s`, `1h0m0s`. Anything under
 * a second is `0s`; a negative duration (an expiry already past) keeps its sign.
 */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : ''
  const totalSeconds = Math.floor(Math.abs(ms) / 1000)
  if (totalSeconds === 0) return '0s'
  const hours = Math.floor(totalSeconds / 3600)
  const minutes = Math.floor((totalSeconds % 3600) / 60)
  const seconds = totalSeconds % 60
  if (hours > 0) return `${sign}${hours}h${minutes}m${seconds}s`
  if (minutes > 0) return `${sign}${minutes}m${seconds}s`
  return `${sign}${seconds}s`
}

/** As formatDuration, without the zero units at its end, as people write a duration: `1h`, `1h30m`, `10s`. */
export function shortDuration(ms: number): string {
  return formatDuration(ms)
    .replace(/(?<=[hm])0s$/, '')
    .replace(/(?<=h)0m$/, '')
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** `n` in at least `width` digits, zeros in front. */
const pad = (n: number, width = 2) => String(n).padStart(width, '0')

/** A moment in UTC in Go's RFC 822 layout, `02 Jan 06 15:04 UTC`, as Teleport prints expiries. */
export function formatUtc(epochMs: number): string {
  const date = new Date(epochMs)
  return `${pad(date.getUTCDate())} ${MONTHS[date.getUTCMonth()]} ${pad(date.getUTCFullYear() % 100)} ` + `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())} UTC`
}

/**
 * A moment as `Date.prototype.toISOString` writes it (`2026-12-04T16:03:20.123Z`), from the
 * UTC fields alone. toISOString makes V8 set up ICU's local time zone the first time it runs
 * (its zone and calendar data, and the objects made from them), which a process that only
 * stamps log lines then holds for nothing: about 1 MB of an idle agent (bench:footprint).
 */
export function isoTime(epochMs: number): string {
  const date = new Date(epochMs)
  const year = date.getUTCFullYear()
  if (Number.isNaN(year)) throw new RangeError('Invalid time value')
  const yyyy = year >= 0 && year <= 9999 ? pad(year, 4) : `${year < 0 ? '-' : '+'}${pad(Math.abs(year), 6)}`
  return (
    `${yyyy}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}` +
    `T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)}Z`
  )
}

/** `02 Jan 06 15:04 UTC (29m59s)`: the expiry and the time left; `never` when there is none. */
export function formatExpiry(expiresMs: number | undefined, nowMs: number): string {
  if (expiresMs === undefined) return 'never'
  return `${formatUtc(expiresMs)} (${formatDuration(expiresMs - nowMs)})`
}

function plural(count: number, unit: string): string {
  return `${count} ${unit}${count === 1 ? '' : 's'}`
}

/**
 * A lifetime in words for sentences like `This token will expire in 30 minutes`:
 * `1 hour 30 minutes`, `5 minutes`, `90 seconds`. A lifetime under two minutes that is not
 * whole minutes reads better in seconds alone.
 */
export function describeTtl(ms: number): string {
  if (ms < 1000) return plural(Math.max(0, Math.floor(ms)), 'millisecond')
  const totalSeconds = Math.floor(ms / 1000)
  if (totalSeconds < 120 && totalSeconds % 60 !== 0) return plural(totalSeconds, 'second')
  const hours = Math.floor(totalSeconds / 3600)
  const minutes = Math.floor((totalSeconds % 3600) / 60)
  const seconds = totalSeconds % 60
  const parts: string[] = []
  if (hours > 0) parts.push(plural(hours, 'hour'))
  if (minutes > 0) parts.push(plural(minutes, 'minute'))
  if (seconds > 0) parts.push(plural(seconds, 'second'))
  return parts.join(' ')
}
