// The pacer's arithmetic, fed drains and round trips at chosen times: the backlog limit
// follows the drain rate, writes are spaced only once pacing is on and only below the
// ceiling, and for less than the drain rate while the round trips show a queue.

import t from 'tap'
import {
  BASE_RTT_WINDOW_MS,
  DRAINING_GAIN,
  MAX_DRAINING_MS,
  MIN_BACKLOG_BYTES,
  OutputPacer,
  PACED_BACKLOG_MS,
  PACING_CEILING,
  PACING_GAIN,
  PEER_SENDING_BYTES,
  QUEUE_TARGET_MS,
  STANDING_QUEUE_MS,
  UNKNOWN_LINK_BACKLOG_BYTES,
} from './output-pacer.ts'

const MAX = 1024 * 1024
const KB = 1024

/** Drains of `bytes` taking `ms` each, back to back from `start`; returns the holds. */
function drainAt(pacer: OutputPacer, start: number, count: number, bytes: number, ms: number): number[] {
  const holds: number[] = []
  let now = start
  for (let i = 0; i < count; i++) {
    now += ms
    const hold = pacer.drained(bytes, ms, now)
    holds.push(hold)
    now += hold
  }
  return holds
}

t.test('a fast link is never held back, and keeps the full backlog once a drain takes time', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  // The kernel takes every write at once: no drain tells of the link.
  let holds = drainAt(pacer, 0, 500, 64 * KB, 0.2)
  t.equal(pacer.rate, Number.POSITIVE_INFINITY)
  t.equal(pacer.backlogLimit, UNKNOWN_LINK_BACKLOG_BYTES, 'a little backlog, so that drains keep coming')
  // 1 MiB drained in 25 ms: 42 MB/s, a fast LAN.
  holds = holds.concat(drainAt(pacer, 200, 40, MAX, 25))
  t.ok(pacer.rate > PACING_CEILING)
  t.equal(pacer.backlogLimit, Math.round(pacer.rate * PACED_BACKLOG_MS), 'what the link drains in PACED_BACKLOG_MS')
  t.ok(pacer.backlogLimit > 256 * KB)
  t.same(new Set(holds), new Set([0]), 'no write is held back')
})

t.test('nothing is measured or held back until pacing is on', async (t) => {
  const pacer = new OutputPacer(MAX)
  // 250 KB/s, as a 2 Mbit/s uplink: 64 KiB drains taking 262 ms.
  const holds = drainAt(pacer, 0, 4, 64 * KB, 262)
  t.equal(pacer.rate, Number.POSITIVE_INFINITY)
  t.equal(pacer.backlogLimit, MAX)
  t.same(new Set(holds), new Set([0]))
})

t.test('once on, a slow link queues little and spaces its writes by the drain rate', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  drainAt(pacer, 0, 1, 256 * KB, 1048)
  const rate = pacer.rate
  t.equal(pacer.backlogLimit, MIN_BACKLOG_BYTES, 'the least backlog: the link drains less than that in PACED_BACKLOG_MS')
  // The kernel takes 16 KiB at once: the next write waits for the link to have sent it.
  const hold = pacer.drained(16 * KB, 0.5, 2000)
  t.ok(Math.abs(hold - ((16 * KB) / (rate * PACING_GAIN) - 0.5)) < 0.01, `held ${hold} ms`)
  // A drain that itself took longer than its bytes are worth at the paced rate is not held.
  t.equal(pacer.drained(16 * KB, 300, 2400), 0)
})

t.test('the first drain that tells of the link sets the rate', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  // The kernel had room: it took these at once, whatever the link.
  drainAt(pacer, 0, 5, 16 * KB, 0.3)
  t.equal(pacer.rate, Number.POSITIVE_INFINITY)
  t.equal(pacer.backlogLimit, UNKNOWN_LINK_BACKLOG_BYTES, 'a little backlog meanwhile, so that drains keep coming')
  drainAt(pacer, 100, 1, 48 * KB, 250)
  t.ok(Math.abs(pacer.rate - (128 * KB) / 251.5) < 1, `the window's bytes over its time: ${pacer.rate}`)
  t.equal(pacer.backlogLimit, Math.round(pacer.rate * PACED_BACKLOG_MS), 'what the link drains in PACED_BACKLOG_MS')
})

t.test('a long run of drains keeps its sums right as old ones leave the window', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  // 80 s of 64 KiB drains every 32 ms (2 MB/s), then the rate of the last second alone.
  drainAt(pacer, 0, 2500, 64 * KB, 32)
  t.ok(Math.abs(pacer.rate - (64 * KB) / 32) < 0.01, `rate ${pacer.rate}`)
  drainAt(pacer, 90_000, 32, 64 * KB, 64)
  t.ok(Math.abs(pacer.rate - (64 * KB) / 64) < 0.01, `rate ${pacer.rate} once the link got slower`)
})

t.test('a link between slow and fast gets a backlog of PACED_BACKLOG_MS', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  // 5 MB/s: 250 KB drains taking 50 ms.
  drainAt(pacer, 0, 40, 250_000, 50)
  t.ok(Math.abs(pacer.backlogLimit - 5000 * PACED_BACKLOG_MS) < 1000, `limit ${pacer.backlogLimit}`)
})

t.test('the rate forgets drains older than its window', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  drainAt(pacer, 0, 4, 64 * KB, 262)
  t.equal(pacer.backlogLimit, MIN_BACKLOG_BYTES)
  // Then 2 seconds later the link is fast again.
  drainAt(pacer, 3000, 200, MAX, 2)
  t.ok(pacer.rate > PACING_CEILING)
  t.equal(pacer.backlogLimit, MAX)
})

/** A pacer on a 250 KB/s link (a 2 Mbit/s uplink), its rate known. */
function slowLinkPacer(): OutputPacer {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  drainAt(pacer, 0, 1, 256 * KB, 1048)
  return pacer
}

/** The hold after a drain of 16 KiB the kernel took at once, as a multiple of the drain rate. */
function gainAfterDrain(pacer: OutputPacer, now: number): number {
  const rate = pacer.rate
  const hold = pacer.drained(16 * KB, 0.5, now)
  return (16 * KB) / (hold + 0.5) / rate
}

t.test('round trips above the base slow the writes until the queue is gone', async (t) => {
  const pacer = slowLinkPacer()
  // The idle link's round trip, then the copy's queue growing.
  pacer.roundTrip(5, 1100)
  pacer.roundTrip(5, 1200)
  t.equal(pacer.queueMs, 0)
  t.ok(Math.abs(gainAfterDrain(pacer, 1210) - PACING_GAIN) < 0.01, 'no queue: faster than the drain rate, to find a faster link')
  pacer.roundTrip(5 + QUEUE_TARGET_MS + 5, 1300)
  t.equal(pacer.queueMs, 0, 'one late round trip alone is not taken for a queue')
  pacer.roundTrip(5 + QUEUE_TARGET_MS + 8, 1400)
  t.equal(pacer.queueMs, QUEUE_TARGET_MS + 5, 'the least of the last two, less the base')
  t.ok(Math.abs(gainAfterDrain(pacer, 1410) - 1) < 0.01, 'past the target: at the drain rate')
  pacer.roundTrip(5 + 3 * QUEUE_TARGET_MS, 1500)
  pacer.roundTrip(5 + 3 * QUEUE_TARGET_MS, 1600)
  t.ok(Math.abs(gainAfterDrain(pacer, 1610) - DRAINING_GAIN) < 0.01, 'past twice the target: slower, so that the queue drains')
  pacer.roundTrip(6, 1700)
  pacer.roundTrip(6, 1800)
  t.equal(pacer.queueMs, 1)
  t.ok(Math.abs(gainAfterDrain(pacer, 1810) - PACING_GAIN) < 0.01, 'the queue gone: probing again')
})

t.test('the base round trip is the least of the last BASE_RTT_WINDOW_MS, so a longer route is learnt', async (t) => {
  const pacer = slowLinkPacer()
  pacer.roundTrip(5, 1100)
  // The route changed: every round trip is now 100 ms.
  let now = 1200
  for (; now < 1100 + BASE_RTT_WINDOW_MS; now += 100) pacer.roundTrip(100, now)
  t.equal(pacer.queueMs, 95, 'within the window the old base still counts')
  pacer.roundTrip(100, now + 100)
  t.equal(pacer.queueMs, 0, 'after it, the new round trip is the base')
})

t.test('a long base round trip tolerates a queue of a quarter of it', async (t) => {
  const pacer = slowLinkPacer()
  // A satellite link: 600 ms, and 100 ms of jitter is not slowed for.
  pacer.roundTrip(600, 1100)
  pacer.roundTrip(700, 1200)
  pacer.roundTrip(700, 1300)
  t.equal(pacer.queueMs, 100)
  t.ok(Math.abs(gainAfterDrain(pacer, 1310) - PACING_GAIN) < 0.01)
})

t.test('round trips change nothing until pacing is on', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.roundTrip(5, 0)
  pacer.roundTrip(500, 100)
  pacer.roundTrip(500, 200)
  t.equal(pacer.queueMs, 0)
})

t.test('a queue that going slower does not drain is taken as not ours: the rate is held, not starved', async (t) => {
  const pacer = slowLinkPacer()
  const rate = pacer.rate
  pacer.roundTrip(5, 1100)
  // Other traffic keeps 60 ms queued on the link, whatever this tunnel does.
  let now = 1200
  pacer.roundTrip(65, now)
  pacer.roundTrip(65, (now += 50))
  t.ok(Math.abs(gainAfterDrain(pacer, now + 1) - DRAINING_GAIN) < 0.01, 'first, slower: it may be ours')
  // Drains all along, each of what the kernel took at once.
  for (const end = now + MAX_DRAINING_MS; now < end; now += 50) {
    pacer.roundTrip(65, now)
    gainAfterDrain(pacer, now + 1)
  }
  t.ok(Math.abs(gainAfterDrain(pacer, now + 1) - 1) < 0.01, `after ${MAX_DRAINING_MS} ms: at the drain rate`)
  // Going slower lowered the rate measured (a second of drains at DRAINING_GAIN); then it is held.
  const steady = (until: number) => {
    for (; now < until; now += 50) {
      pacer.roundTrip(65, now)
      gainAfterDrain(pacer, now + 1)
    }
    return pacer.rate
  }
  const settled = steady(now + 2000)
  t.ok(settled >= 0.6 * rate, `lowered by the one drain only: ${settled} of ${rate} bytes/ms`)
  t.ok(Math.abs(steady(now + 5000) / settled - 1) < 0.01, `then held: ${pacer.rate} bytes/ms`)
  pacer.roundTrip(5, (now += 50))
  pacer.roundTrip(5, (now += 50))
  pacer.roundTrip(65, (now += 50))
  pacer.roundTrip(65, (now += 50))
  t.ok(Math.abs(gainAfterDrain(pacer, now + 1) - DRAINING_GAIN) < 0.01, 'a new queue after it was gone: slower again')
  // No answers for a while: the drain still ends on time.
  const quiet = slowLinkPacer()
  quiet.roundTrip(5, 1100)
  quiet.roundTrip(65, 1200)
  quiet.roundTrip(65, 1250)
  t.ok(Math.abs(gainAfterDrain(quiet, 1250 + MAX_DRAINING_MS) - 1) < 0.01, 'without round trips too')
})

t.test('while the peer sends in bulk, its own queue ahead of our answers is allowed for', async (t) => {
  const pacer = slowLinkPacer()
  pacer.roundTrip(5, 1100)
  // 40 ms of queue: past twice the target, but under that plus the peer's allowance.
  pacer.roundTrip(45, 1200, PEER_SENDING_BYTES)
  pacer.roundTrip(45, 1250, PEER_SENDING_BYTES)
  t.ok(Math.abs(gainAfterDrain(pacer, 1251) - PACING_GAIN) < 0.01, 'the peer sends: 40 ms is within its allowance')
  pacer.roundTrip(45, 1300, PEER_SENDING_BYTES - 1)
  pacer.roundTrip(45, 1350, 0)
  t.ok(Math.abs(gainAfterDrain(pacer, 1351) - DRAINING_GAIN) < 0.01, 'it does not: the queue is ours')
  pacer.roundTrip(5 + 5 * QUEUE_TARGET_MS, 1400, 64 * KB)
  pacer.roundTrip(5 + 5 * QUEUE_TARGET_MS, 1450, 64 * KB)
  t.ok(Math.abs(gainAfterDrain(pacer, 1451) - DRAINING_GAIN) < 0.01, 'past the allowance too: slower')
})

t.test('a queue past the target but under twice it is drained once it has stood for STANDING_QUEUE_MS, down to half the target', async (t) => {
  const pacer = slowLinkPacer()
  pacer.roundTrip(5, 1000)
  let now = 1000
  const standing = 5 + QUEUE_TARGET_MS + 5
  pacer.roundTrip(standing, (now += 50))
  pacer.roundTrip(standing, (now += 50))
  t.ok(Math.abs(gainAfterDrain(pacer, now + 1) - 1) < 0.01, 'at the drain rate: it may go')
  for (const end = now + STANDING_QUEUE_MS; now < end; ) pacer.roundTrip(standing, (now += 50))
  t.ok(Math.abs(gainAfterDrain(pacer, now + 1) - DRAINING_GAIN) < 0.01, 'it stood: drained, so that it does not become the base')
  pacer.roundTrip(5 + QUEUE_TARGET_MS - 5, (now += 50))
  pacer.roundTrip(5 + QUEUE_TARGET_MS - 5, (now += 50))
  t.ok(Math.abs(gainAfterDrain(pacer, now + 1) - DRAINING_GAIN) < 0.01, 'under the target but not under half of it: still draining')
  pacer.roundTrip(5 + QUEUE_TARGET_MS / 2 - 1, (now += 50))
  pacer.roundTrip(5 + QUEUE_TARGET_MS / 2 - 1, (now += 50))
  t.ok(Math.abs(gainAfterDrain(pacer, now + 1) - PACING_GAIN) < 0.01, 'under half the target: probing again')
})

t.test('round trips are wanted only while writes are spaced', async (t) => {
  const pacer = new OutputPacer(MAX)
  t.equal(pacer.wantsRoundTrips, false, 'not paced')
  pacer.activate()
  t.equal(pacer.wantsRoundTrips, false, 'no rate yet: nothing is held back')
  drainAt(pacer, 0, 1, 256 * KB, 1048)
  t.equal(pacer.wantsRoundTrips, true)
  // 1 MiB drained in 25 ms: 42 MB/s, a fast LAN.
  const fast = new OutputPacer(MAX)
  fast.activate()
  drainAt(fast, 0, 40, MAX, 25)
  t.ok(fast.rate > PACING_CEILING)
  t.equal(fast.wantsRoundTrips, false, 'past the ceiling: nothing is held back')
})
