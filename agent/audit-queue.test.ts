// The node's audit queue on a real file: what is queued survives a restart (and a line torn
// by a crash), what the auth server acknowledged does not come back, and the bounds drop
// the oldest events first and count them. Then the sender: a batch is removed only after a
// send succeeds, and sent again after a failure; refused by the auth server's budget (429
// with Retry-After), no sooner than the wait it named, by an injected clock and timer.

import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import t from 'tap'
import { statusOf } from '../auth/api/errors.ts'
import { Audit } from '../auth/audit.ts'
import type { Backend } from '../auth/backend/backend.ts'
import { MAX_SERVER_WAIT_MS, serverWaitMs } from '../shared/backoff.ts'
import { ApiError } from '../shared/errors.ts'
import { createLogger } from '../shared/log.ts'
import { repoModule, underFileSizeLimit } from '../test/helpers/file-size-limit.ts'
import { AuditQueue, type QueuedEvent } from './audit-queue.ts'
import { AuditSender } from './audit-sender.ts'

function queuePath(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-audit-queue-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'audit-queue.jsonl')
}

function open(t: Test, path: string, bounds: { maxEvents?: number; maxBytes?: number } = {}): AuditQueue {
  const queue = new AuditQueue({ path, ...bounds })
  t.teardown(() => queue.close())
  return queue
}

const event = (n: number, extra: Record<string, string> = {}): QueuedEvent => ({
  id: `event-${String(n).padStart(4, '0')}`,
  time: 1000 + n,
  type: 'exec',
  command: `cmd ${n}`,
  ...extra,
})
const ids = (events: QueuedEvent[]) => events.map((e) => e.id)

t.test('queued events survive a restart; acknowledged ones do not come back', async (t) => {
  const path = queuePath(t)
  const queue = open(t, path)
  for (let n = 1; n <= 4; n++) queue.add(event(n))
  t.same(ids(queue.peek(2, 1 << 20)), ['event-0001', 'event-0002'], 'oldest first')
  queue.remove(['event-0001', 'event-0002'])
  queue.close()
  // A crash in the middle of a write leaves half a line.
  appendFileSync(path, '{"add":{"id":"event-9999","ti')
  const again = open(t, path)
  t.equal(again.size, 2)
  t.same(ids(again.peek(10, 1 << 20)), ['event-0003', 'event-0004'], 'the torn line never counted')
  t.same(again.peek(10, 1 << 20)[0], event(3), 'fields and all')
  again.add(event(5))
  again.close()
  again.close()
  t.throws(() => again.add(event(6)), /closed/, 'nothing is written once closed')
  t.same(ids(open(t, path).peek(10, 1 << 20)), ['event-0003', 'event-0004', 'event-0005'], 'an add after the torn line is read')
})

t.test('opening writes the journal again with only what waits', async (t) => {
  const path = queuePath(t)
  const queue = open(t, path)
  for (let n = 1; n <= 50; n++) queue.add(event(n))
  queue.remove(ids(queue.peek(49, 1 << 20)))
  queue.close()
  const before = statSync(path).size
  open(t, path)
  t.ok(statSync(path).size < before / 10, 'compacted')
  t.same(
    readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line).add.id),
    ['event-0050'],
  )
})

t.test('beyond the count bound the oldest are dropped and counted, across restarts', async (t) => {
  const path = queuePath(t)
  const queue = open(t, path, { maxEvents: 3 })
  for (let n = 1; n <= 5; n++) queue.add(event(n))
  t.equal(queue.size, 3)
  t.equal(queue.dropped, 2)
  t.same(ids(queue.peek(10, 1 << 20)), ['event-0003', 'event-0004', 'event-0005'])
  queue.close()
  const again = open(t, path, { maxEvents: 3 })
  t.equal(again.dropped, 2, 'the count survives a restart until the journal is rewritten')
  t.equal(again.size, 3)
})

t.test('beyond the byte bound the oldest are dropped too', async (t) => {
  const queue = open(t, queuePath(t), { maxBytes: 1000 })
  const big = 'x'.repeat(300)
  for (let n = 1; n <= 5; n++) queue.add(event(n, { command: big }))
  t.equal(queue.size, 2, 'about 370 bytes each: two fit in 1000')
  t.equal(queue.dropped, 3)
  t.same(ids(queue.peek(10, 1 << 20)), ['event-0004', 'event-0005'])
  t.same(ids(queue.peek(10, 500)), ['event-0004'], 'a batch stays within its bytes')
  t.same(ids(queue.peek(10, 10)), ['event-0004'], 'but always holds one event')
})

t.test('the sender removes a batch only once it was sent, and sends it again after a failure', async (t) => {
  const queue = open(t, queuePath(t))
  const received: string[][] = []
  let failNext = 1
  const sender = new AuditSender({
    queue,
    transport: () => ({
      maxBytes: 1 << 20,
      send: async (events) => {
        received.push(ids(events))
        if (failNext-- > 0) throw new Error('the auth server is away')
      },
    }),
    refused: () => false,
    log: createLogger('test', { level: 'error' }),
  })
  t.teardown(() => sender.stop())
  sender.record('session.start', { session_id: 's-1', user: 'alice', login: 'pi', client_addr: '127.0.0.1', unset: undefined })
  t.equal(queue.size, 1, 'queued before anything is sent')
  for (let i = 0; i < 100 && queue.size > 0; i++) await sleep(50)
  t.equal(queue.size, 0, 'gone once a send succeeded')
  t.equal(received.length, 2, 'sent twice: the first send failed')
  t.same(received[0], received[1], 'the same event, with the same ID')
})

t.test('a batch the auth server refuses for what it is is dropped and counted, not sent forever', async (t) => {
  const queue = open(t, queuePath(t))
  const sender = new AuditSender({
    queue,
    transport: () => ({
      maxBytes: 1 << 20,
      send: async () => {
        throw new Error('refused')
      },
    }),
    refused: () => true,
    log: createLogger('test', { level: 'error', stream: new (await import('node:stream')).PassThrough() }),
  })
  t.teardown(() => sender.stop())
  sender.record('exec', { command: 'y'.repeat(5000) })
  for (let i = 0; i < 100 && queue.size > 0; i++) await sleep(20)
  t.equal(queue.size, 0)
  t.equal(queue.dropped, 1)
})

/** A clock and the timers set by it, run only when the test moves the clock past them. */
function manualTime(start: number) {
  const timers: { at: number; run: () => void }[] = []
  const time = {
    now: start,
    timers,
    setTimer: (run: () => void, ms: number) => {
      const timer = { at: time.now + ms, run }
      timers.push(timer)
      return () => void (timers.includes(timer) && timers.splice(timers.indexOf(timer), 1))
    },
    /** Moves the clock to `to` and runs the timers due by then. */
    advance(to: number) {
      time.now = to
      for (const timer of timers.filter((timer) => timer.at <= to)) {
        timers.splice(timers.indexOf(timer), 1)
        timer.run()
      }
    },
  }
  return time
}

/** What the node's ApiClient makes of the auth server's answer to `error`: its status and Retry-After. */
function asAnswered(error: unknown): ApiError {
  const answer = statusOf(error)
  if (!answer) throw error
  const retryAfter = answer.headers?.['retry-after']
  return new ApiError(answer.status, (error as Error).message, retryAfter === undefined ? undefined : Number(retryAfter))
}

t.test('a batch over the auth server budget is kept and sent again no sooner than its Retry-After', async (t) => {
  const T0 = Date.UTC(2026, 11, 1, 12)
  const time = manualTime(T0)
  const log = createLogger('test', { level: 'error', stream: new (await import('node:stream')).PassThrough() })
  // The auth server's own budget, on the same clock: 2 events a second.
  const audit = new Audit({ backend: {} as Backend, clusterName: 'example', retentionMs: 1, log, clock: () => time.now, nodeBudget: { burst: 100, perSecond: 2 } })
  const queue = open(t, queuePath(t))
  for (let n = 1; n <= 20; n++) queue.add(event(n))
  audit.admitNodeEvents('host-pi', 100)
  const attempts: { at: number; ids: string[]; answer: number | ApiError }[] = []
  const sender = new AuditSender({
    queue,
    transport: () => ({
      maxBytes: 1 << 20,
      send: async (events) => {
        try {
          audit.admitNodeEvents('host-pi', events.length)
        } catch (error) {
          const answered = asAnswered(error)
          attempts.push({ at: time.now, ids: ids(events), answer: answered })
          throw answered
        }
        attempts.push({ at: time.now, ids: ids(events), answer: 200 })
      },
    }),
    refused: () => false,
    log,
    clock: () => time.now,
    setTimer: time.setTimer,
  })
  t.teardown(() => sender.stop())

  sender.kick()
  await until(() => attempts.length === 1 && time.timers.length === 1)
  const refusal = attempts[0].answer as ApiError
  t.match(refusal, { status: 429, retryAfterS: 10 }, '20 events at 2 a second: 429 with Retry-After 10')
  t.equal(queue.size, 20, 'the batch is kept')
  const allowedAt = T0 + refusal.retryAfterS! * 1000
  t.ok(time.timers[0].at >= allowedAt, 'the retry is set for no sooner than Retry-After')

  // A way to the auth server opening, the clock moving up to a moment before: no attempt.
  sender.kick()
  time.advance(allowedAt - 1)
  sender.kick()
  await settle()
  t.equal(attempts.length, 1, 'nothing sent before Retry-After')
  time.advance(Math.max(allowedAt, time.timers[0]?.at ?? allowedAt))
  await until(() => queue.size === 0)
  t.equal(attempts.length, 2, 'sent once the wait is over')
  t.same(attempts[1], { at: allowedAt, ids: attempts[0].ids, answer: 200 }, 'the same events, taken by the budget then')
})

t.test("the auth server's wait is bounded, and without one (or a garbled one) the backoff decides", async (t) => {
  t.equal(serverWaitMs(new ApiError(429, 'over budget', 7)), 7000)
  t.equal(serverWaitMs(new ApiError(429, 'over budget', 86_400)), MAX_SERVER_WAIT_MS, 'a day is cut to the bound')
  t.equal(MAX_SERVER_WAIT_MS, 600_000)
  for (const garbled of [undefined, Number.NaN, -5, Number.POSITIVE_INFINITY, '30'])
    t.equal(serverWaitMs(Object.assign(new ApiError(429, 'over budget'), { retryAfterS: garbled })), undefined, `${String(garbled)}: the backoff decides`)
  t.equal(serverWaitMs(new Error('the tunnel closed')), undefined)
  t.equal(serverWaitMs(null), undefined)

  const time = manualTime(Date.UTC(2026, 11, 1, 12))
  const queue = open(t, queuePath(t))
  queue.add(event(1))
  let answer: ApiError = new ApiError(429, 'over budget', 86_400)
  let attempts = 0
  const sender = new AuditSender({
    queue,
    transport: () => ({
      maxBytes: 1 << 20,
      send: async () => {
        attempts++
        throw answer
      },
    }),
    refused: () => false,
    log: createLogger('test', { level: 'error', stream: new (await import('node:stream')).PassThrough() }),
    clock: () => time.now,
    setTimer: time.setTimer,
  })
  t.teardown(() => sender.stop())
  const start = time.now
  sender.kick()
  await until(() => attempts === 1 && time.timers.length === 1)
  t.equal(time.timers[0].at, start + MAX_SERVER_WAIT_MS, 'a Retry-After of a day waits 10 minutes')
  answer = new ApiError(429, 'over budget')
  time.advance(time.timers[0].at)
  await until(() => attempts === 2 && time.timers.length === 1)
  t.ok(time.timers[0].at - time.now <= 2000, 'no Retry-After: the backoff (at most 2 s by now)')
  t.equal(queue.size, 1, 'kept all along')
})

/** Waits until `done`, for at most 5 s. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await sleep(10)
}

/** Lets promises and I/O callbacks run: whatever a kick started has reached its send. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
}

t.test('an event the disk takes only part of is refused whole, and the events after it are kept', async (t) => {
  // Under a 1 KiB file size limit: the second event's line crosses it; the third fits again.
  const { accepted, kept } = underFileSizeLimit<{ accepted: string[]; kept: string[] }>(
    1,
    `import { AuditQueue } from ${repoModule('agent/audit-queue.ts')}
const event = (id, size) => ({ id, time: '2026-12-07T05:00:00.000Z', type: 'exec', command: 'x'.repeat(size) })
const queue = new AuditQueue({ path: 'audit-queue.jsonl' })
const accepted = []
for (const [id, size] of [['e0', 500], ['e1', 500], ['e2', 100]]) {
  try {
    queue.add(event(id, size))
    accepted.push(id)
  } catch {}
}
queue.close()
const kept = new AuditQueue({ path: 'audit-queue.jsonl' }).peek(10, 1 << 20).map((event) => event.id)
process.stdout.write(JSON.stringify({ accepted, kept }))
`,
  )
  t.same(accepted, ['e0', 'e2'], 'the event cut short is refused')
  t.same(kept, accepted, 'after a restart: every event accepted, and nothing else')
})
