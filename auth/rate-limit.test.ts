import t from 'tap'
import { FailureRateLimiter } from './rate-limit.ts'

t.test('buckets refill at the configured rate, per address', (t) => {
  let now = 0
  const limiter = new FailureRateLimiter({ burst: 2, perMinute: 6, clock: () => now })
  t.equal(limiter.retryAfterMs('a'), 0, 'an unknown address may try')
  limiter.recordFailure('a')
  t.equal(limiter.retryAfterMs('a'), 0, 'one failure leaves one try')
  limiter.recordFailure('a')
  t.equal(limiter.retryAfterMs('a'), 10_000, 'empty bucket: one token every 10 s')
  t.equal(limiter.retryAfterMs('b'), 0, 'other addresses are unaffected')
  now = 5_000
  t.equal(limiter.retryAfterMs('a'), 5_000)
  now = 10_000
  t.equal(limiter.retryAfterMs('a'), 0, 'refilled')
  t.end()
})
