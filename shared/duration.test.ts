import t from 'tap'
import { describeTtl, formatDuration, formatExpiry, formatUtc, isoTime, parseDuration } from './duration.ts'
import { UsageError } from './errors.ts'

function errorOf(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

t.test('parseDuration reads Go-style durations', async (t) => {
  t.equal(parseDuration('250ms'), 250)
  t.equal(parseDuration('30s'), 30_000)
  t.equal(parseDuration('5m'), 300_000)
  t.equal(parseDuration('30h'), 30 * 3_600_000)
  t.equal(parseDuration('1h30m'), 90 * 60_000)
  t.equal(parseDuration('1h0m0s'), 3_600_000)
  t.equal(parseDuration('1.5h'), 90 * 60_000)
  t.equal(parseDuration('1m30s500ms'), 90_500)
})

t.test('parseDuration refuses what Go refuses, naming the flag', async (t) => {
  for (const text of ['5x', '', '5', 'm', '2d', '5m junk', '1h 30m', 'abc', '5M']) {
    t.type(
      errorOf(() => parseDuration(text, '--ttl')),
      UsageError,
      text,
    )
  }
  t.throws(() => parseDuration('5x', '--ttl'), {
    message: 'invalid duration "5x" for --ttl: use a number with a unit, e.g. 30s, 5m, 1h',
  })
  t.throws(() => parseDuration('5x'), { message: 'invalid duration "5x": use a number with a unit, e.g. 30s, 5m, 1h' })
})

t.test('parseDuration refuses zero and negative durations', async (t) => {
  t.throws(() => parseDuration('0s', '--ttl'), { message: /"0s" for --ttl: must be more than zero/ })
  t.type(
    errorOf(() => parseDuration('0')),
    UsageError,
  )
  t.throws(() => parseDuration('-5m'), { message: /must be more than zero/ })
  t.type(
    errorOf(() => parseDuration('0.1ms')),
    UsageError,
    'rounds to zero',
  )
})

t.test('formatDuration prints Go compact form, truncated to seconds', async (t) => {
  t.equal(formatDuration(29 * 60_000 + 59_999), '29m59s')
  t.equal(formatDuration(3_600_000), '1h0m0s')
  t.equal(formatDuration(45_000), '45s')
  t.equal(formatDuration(2.5 * 3_600_000), '2h30m0s')
  t.equal(formatDuration(999), '0s')
  t.equal(formatDuration(0), '0s')
  t.equal(formatDuration(-5_000), '-5s')
})

t.test('formatExpiry uses the RFC 822 layout in UTC and the time left', async (t) => {
  const now = Date.UTC(2026, 10, 25, 2, 30, 0)
  const expires = now + 30 * 60_000 - 1
  t.equal(formatExpiry(expires, now), '25 Nov 26 02:59 UTC (29m59s)')
  t.equal(formatExpiry(undefined, now), 'never')
  t.equal(formatUtc(Date.UTC(2006, 0, 2, 15, 4, 5)), '02 Jan 06 15:04 UTC')
})

t.test('describeTtl reads as a phrase', async (t) => {
  t.equal(describeTtl(30 * 60_000), '30 minutes')
  t.equal(describeTtl(3_600_000), '1 hour')
  t.equal(describeTtl(5 * 60_000), '5 minutes')
  t.equal(describeTtl(90_000), '90 seconds')
  t.equal(describeTtl(90 * 60_000), '1 hour 30 minutes')
  t.equal(describeTtl(60_000), '1 minute')
  t.equal(describeTtl(30 * 3_600_000), '30 hours')
  t.equal(describeTtl(2 * 3_600_000 + 1_000), '2 hours 1 second')
  t.equal(describeTtl(1_000), '1 second')
  t.equal(describeTtl(250), '250 milliseconds')
})

t.test('isoTime writes what toISOString writes, over the whole range of dates', async (t) => {
  const edges = [0, -1, 1, 8.64e15, -8.64e15, Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1), Date.UTC(-1, 0, 1), Date.UTC(0, 0, 1) - 1, 1e12 + 7]
  let random = 0x2545f491
  const next = () => ((random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1
  const samples = [...edges, ...Array.from({ length: 2000 }, () => Math.round(next() * 8.64e15)), ...Array.from({ length: 2000 }, () => Math.round(Date.now() + next() * 1e11))]
  const wrong = samples.filter((ms) => isoTime(ms) !== new Date(ms).toISOString())
  t.same(
    wrong.map((ms) => [ms, isoTime(ms), new Date(ms).toISOString()]),
    [],
    'no moment differs',
  )
  t.throws(() => isoTime(Number.NaN), RangeError, 'an invalid time is refused as toISOString refuses it')
  t.throws(() => isoTime(8.64e15 + 1), RangeError, 'so is a time beyond the range of dates')
})
