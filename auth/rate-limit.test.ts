import t from 'tap'
import { bucketKey, FailureRateLimiter } from './rate-limit.ts'

t.test('tries are taken on arrival and refill at the configured rate, per address', (t) => {
  let now = 0
  const limiter = new FailureRateLimiter({ burst: 2, perMinute: 6, clock: () => now })
  t.equal(limiter.reserve('192.0.2.1'), 0, 'an unknown address may try')
  t.equal(limiter.reserve('192.0.2.1'), 0, 'a second try, still in flight with the first')
  t.equal(limiter.reserve('192.0.2.1'), 10_000, 'the burst is taken: one try every 10 s')
  t.equal(limiter.reserve('192.0.2.2'), 0, 'other addresses are unaffected')
  now = 5_000
  t.equal(limiter.reserve('192.0.2.1'), 5_000, 'a refused try takes nothing')
  now = 10_000
  t.equal(limiter.reserve('192.0.2.1'), 0, 'refilled: one more try')
  t.equal(limiter.reserve('192.0.2.1'), 10_000)
  now = 30_000
  t.equal(limiter.reserve('192.0.2.1'), 0, 'a throttled address recovers at the refill rate')
  t.equal(limiter.reserve('192.0.2.1'), 0, 'two tries after 20 s')
  t.equal(limiter.reserve('192.0.2.1'), 10_000, 'and no more')
  t.end()
})

t.test('a successful join gives its try back; a failed one keeps it', (t) => {
  const now = 0
  const limiter = new FailureRateLimiter({ burst: 2, perMinute: 1, clock: () => now })
  for (let i = 0; i < 100; i++) {
    t.equal(limiter.reserve('192.0.2.1'), 0)
    limiter.refund('192.0.2.1')
  }
  t.pass('a hundred valid joins in a row from one address are never throttled')
  t.equal(limiter.reserve('192.0.2.1'), 0)
  t.equal(limiter.reserve('192.0.2.1'), 0)
  t.equal(limiter.reserve('192.0.2.1'), 60_000, 'two failures take the burst')
  limiter.refund('192.0.2.1')
  limiter.refund('192.0.2.1')
  limiter.refund('192.0.2.1')
  t.equal(limiter.reserve('192.0.2.1'), 0, 'refunds give tries back')
  t.equal(limiter.reserve('192.0.2.1'), 0)
  t.equal(limiter.reserve('192.0.2.1'), 60_000, 'but never more than the burst')
  t.end()
})

t.test('IPv6 addresses share a bucket per /64; IPv4-mapped ones are IPv4', (t) => {
  const limiter = new FailureRateLimiter({ burst: 1, perMinute: 1, clock: () => 0 })
  t.equal(limiter.reserve('2001:db8:1:2::1'), 0)
  t.not(limiter.reserve('2001:db8:1:2:ffff:ffff:ffff:ffff'), 0, 'another address of the same /64')
  t.equal(limiter.reserve('2001:db8:1:3::1'), 0, 'the next /64')
  t.equal(limiter.reserve('198.51.100.7'), 0)
  t.not(limiter.reserve('::ffff:198.51.100.7'), 0, 'the same IPv4 address, written IPv4-mapped')
  t.equal(bucketKey('2001:0DB8:0001:0002:0000:0000:0000:0001'), '2001:db8:1:2::/64')
  t.equal(bucketKey('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(bucketKey('::1'), '0:0:0:0::/64')
  t.equal(bucketKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
  t.equal(bucketKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64')
  t.equal(bucketKey('::FFFF:192.0.2.1'), '192.0.2.1')
  t.equal(bucketKey('unknown'), 'unknown')
  t.end()
})

t.test('buckets that have refilled are forgotten', (t) => {
  let now = 0
  const limiter = new FailureRateLimiter({ burst: 1, perMinute: 60, clock: () => now })
  const size = () => (limiter as unknown as { buckets: Map<string, unknown> }).buckets.size
  for (let i = 0; i < 10_000; i++) limiter.reserve(`10.0.${i >> 8}.${i & 255}`)
  t.equal(size(), 10_000)
  now = 1_000
  limiter.reserve('192.0.2.1')
  t.equal(size(), 1, 'past 10,000 buckets, the refilled ones are gone')
  t.end()
})
