// The pacer's arithmetic, fed drains at chosen times: the backlog limit follows the drain
// rate, and writes are spaced only once pacing is on and only below the ceiling.

import t from 'tap'
import { MIN_BACKLOG_BYTES, OutputPacer, PACED_BACKLOG_MS, PACING_CEILING, PACING_GAIN } from './output-pacer.ts'

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
  t.equal(pacer.backlogLimit, MIN_BACKLOG_BYTES, 'a little backlog, so that drains keep coming')
  // 1 MiB drained in 6 ms: 175 MB/s, as on loopback.
  holds = holds.concat(drainAt(pacer, 200, 100, MAX, 6))
  t.ok(pacer.rate > PACING_CEILING)
  t.equal(pacer.backlogLimit, MAX)
  t.same(new Set(holds), new Set([0]), 'no write is held back')
})

t.test('a slow link is only measured until pacing is on', async (t) => {
  const pacer = new OutputPacer(MAX)
  // 250 KB/s, as a 2 Mbit/s uplink: 64 KiB drains taking 262 ms.
  const holds = drainAt(pacer, 0, 4, 64 * KB, 262)
  t.ok(Math.abs(pacer.rate - (64 * KB) / 262) < 1, `rate ${pacer.rate} bytes per ms`)
  t.equal(pacer.backlogLimit, MAX, 'not paced yet: the limit stays')
  t.same(new Set(holds), new Set([0]), 'and nothing is held back')
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

t.test('drains measured before pacing are forgotten when it starts', async (t) => {
  const pacer = new OutputPacer(MAX)
  // Without the kernel's limit it took every write at once: fast, whatever the link.
  drainAt(pacer, 0, 50, 128 * KB, 0.3)
  pacer.activate()
  t.equal(pacer.rate, Number.POSITIVE_INFINITY)
  drainAt(pacer, 100, 1, 256 * KB, 1048)
  t.ok(Math.abs(pacer.rate - (256 * KB) / 1048) < 1, 'the first drain with the limit is the rate')
  t.equal(pacer.backlogLimit, MIN_BACKLOG_BYTES)
})

t.test('a link between slow and fast gets a backlog of PACED_BACKLOG_MS', async (t) => {
  const pacer = new OutputPacer(MAX)
  pacer.activate()
  // 5 MB/s: 50 KB drains taking 10 ms.
  drainAt(pacer, 0, 200, 50_000, 10)
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
