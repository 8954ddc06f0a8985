// The node's audit queue on a real file: what is queued survives a restart (and a line torn
// by a crash), what the auth server acknowledged does not come back, and the bounds drop
// the oldest events first and count them: sftp and port_forward events before any that say
// who logged in and what ran, each drop told in an events.dropped event sent first. Then the sender: a batch is removed only after a
// send succeeds, and sent again after a failure; refused by the auth server's budget (429
// with Retry-After), no sooner than the wait it named, by an injected clock and timer.

import { appendFileSync, closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs'
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
import { AuditQueue, GAP_TYPE, type QueuedEvent } from './audit-queue.ts'
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

t.test('a journal past what one string holds is read back, a run of zeros a crash left skipped', async (t) => {
  const path = queuePath(t)
  const queue = open(t, path)
  queue.add(event(1))
  queue.close()
  // 600 MiB of zeros (sparse: no disk used), where a crash left a file's last blocks, then a
  // line after them: the file is past V8's longest string (512 MiB), as a journal of an
  // earlier version, which was never written again, could be.
  const fd = openSync(path, 'r+')
  ftruncateSync(fd, fstatSync(fd).size + 600 * 1024 * 1024)
  closeSync(fd)
  appendFileSync(path, `\n${JSON.stringify({ add: event(2, { command: 'caf\u00e9 \u2603' }) })}\n`)
  const again = open(t, path)
  t.same(again.peek(10, 1 << 20), [event(1), event(2, { command: 'caf\u00e9 \u2603' })], 'both lines read, characters whole')
  t.ok(statSync(path).size < 4096, 'and the journal is written again without the zeros')
})

/** The waiting events.dropped event, sent first, and acknowledged: what the sender does with it. */
function takeGap(queue: AuditQueue): QueuedEvent {
  const [gap] = queue.peek(10, 1 << 20)
  if (gap?.type !== GAP_TYPE) throw new Error(`no events.dropped event first: ${JSON.stringify(gap)}`)
  queue.remove([gap.id])
  return gap
}

/** Every events.dropped event the queue has to send, each acknowledged, summed: how many were told dropped, by type. */
function takeGaps(queue: AuditQueue): { events: number; dropped: number; types: Record<string, number> } {
  const told = { events: 0, dropped: 0, types: {} as Record<string, number> }
  while (queue.peek(1, 1 << 20)[0]?.type === GAP_TYPE) {
    const gap = takeGap(queue)
    told.events++
    told.dropped += gap.dropped as number
    for (const [type, count] of String(gap.types)
      .split(',')
      .map((pair) => pair.split('=')))
      told.types[type!] = (told.types[type!] ?? 0) + Number(count)
  }
  return told
}

t.test('beyond the count bound the oldest are dropped and counted, across restarts', async (t) => {
  const path = queuePath(t)
  const queue = open(t, path, { maxEvents: 3 })
  for (let n = 1; n <= 5; n++) queue.add(event(n))
  t.equal(queue.size, 4, 'three events and the events.dropped event, outside the bounds')
  t.equal(queue.dropped, 2)
  queue.close()
  const again = open(t, path, { maxEvents: 3 })
  t.equal(again.dropped, 2, 'the count survives a restart until the journal is rewritten')
  t.equal(again.size, 4)
  t.match(takeGap(again), { type: GAP_TYPE, dropped: 1, types: 'exec=1', since: 1001, until: 1001 }, 'the first drop is told at once, the same event after the restart')
  t.same(ids(again.peek(10, 1 << 20)), ['event-0003', 'event-0004', 'event-0005'], 'then a batch of the others')
  again.remove(['event-0003'])
  t.match(takeGap(again), { type: GAP_TYPE, dropped: 1, types: 'exec=1', since: 1002, until: 1002 }, 'then the next drop, once that was delivered')
})

t.test('beyond the byte bound the oldest are dropped too', async (t) => {
  const queue = open(t, queuePath(t), { maxBytes: 1000 })
  const big = 'x'.repeat(300)
  for (let n = 1; n <= 5; n++) queue.add(event(n, { command: big }))
  t.equal(queue.size, 3, 'about 370 bytes each: two fit in 1000, and the events.dropped event')
  t.equal(queue.dropped, 3)
  t.match(takeGap(queue), { dropped: 1 })
  t.same(ids(queue.peek(10, 1 << 20)), ['event-0004', 'event-0005'])
  t.same(ids(queue.peek(10, 500)), ['event-0004'], 'a batch stays within its bytes')
  t.same(ids(queue.peek(10, 10)), ['event-0004'], 'but always holds one event')
  queue.remove(['event-0004'])
  t.match(takeGap(queue), { dropped: 2 }, 'the other drops told once a batch of the others went')
})

const session = (id: string, user: string) => ({ session_id: id, user, login: 'pi', client_addr: '127.0.0.1' })
const sftp = (n: number, who = session('s-mallory', 'mallory')): QueuedEvent => ({
  id: `sftp-${String(n).padStart(4, '0')}`,
  time: 2000 + n,
  type: 'sftp',
  operation: 'mkdir',
  path: `/tmp/${n}`,
  ...who,
})

t.test("a user's flood of sftp events never pushes out who logged in and what they ran: the bulk kinds go first", async (t) => {
  const path = queuePath(t)
  const queue = open(t, path, { maxEvents: 6 })
  const mallory = session('s-mallory', 'mallory')
  queue.add({ id: 'start-1', time: 1, type: 'session.start', ...mallory })
  for (let n = 1; n <= 3; n++) queue.add(sftp(n))
  queue.add({ id: 'exec-1', time: 10, type: 'exec', command: 'the command to hide', ...mallory })
  queue.add({ id: 'forward-1', time: 11, type: 'port_forward', host: 'db', port: 5432, ...mallory })
  queue.add({ id: 'end-1', time: 12, type: 'session.end', ...mallory })
  for (let n = 4; n <= 1000; n++) queue.add(sftp(n))
  t.equal(queue.dropped, 998)
  t.match(
    queue.peek(10, 1 << 20),
    [{ type: GAP_TYPE, sessions: 's-mallory', users: 'mallory', user: 'mallory', session_id: 's-mallory', since: 2001 }],
    'whose session lost events',
  )
  t.same(takeGaps(queue), { events: 1, dropped: 1, types: { sftp: 1 } }, 'the first drop told at once')
  t.same(
    ids(queue.peek(10, 1 << 20)),
    ['start-1', 'exec-1', 'end-1', 'sftp-0998', 'sftp-0999', 'sftp-1000'],
    'the session and its command kept, and the newest sftp events: they go next',
  )
  for (let n = 2; n <= 4; n++) queue.add({ id: `exec-${n}`, time: 10 + n, type: 'exec', command: 'more', ...mallory })
  // Only such events waiting: the new sftp event is the one dropped.
  queue.add(sftp(1001))
  t.same(ids(queue.peek(10, 1 << 20)), ['start-1', 'exec-1', 'end-1', 'exec-2', 'exec-3', 'exec-4'], 'commands push out sftp events')
  // Past them only, the oldest of the rest.
  queue.add({ id: 'exec-5', time: 15, type: 'exec', command: 'more', ...mallory })
  t.same(ids(queue.peek(10, 1 << 20)), ['exec-1', 'end-1', 'exec-2', 'exec-3', 'exec-4', 'exec-5'])
  queue.close()
  const again = open(t, path, { maxEvents: 6 })
  t.same(takeGaps(again), { events: 1, dropped: 1002, types: { sftp: 1000, port_forward: 1, 'session.start': 1 } }, 'after a restart, every other drop is told, in one event')
  t.same(ids(again.peek(10, 1 << 20)), ['exec-1', 'end-1', 'exec-2', 'exec-3', 'exec-4', 'exec-5'], 'and the same events wait')
})

t.test('drops are told in one events.dropped event at a time, sent first and alone; what is dropped while it waits is told next', async (t) => {
  let now = 50_000
  const path = queuePath(t)
  const queue = new AuditQueue({ path, maxEvents: 2, clock: () => now })
  t.teardown(() => queue.close())
  for (let n = 1; n <= 4; n++) queue.add(sftp(n, session(`s-${n % 2}`, `user-${n % 2}`)))
  t.equal(queue.size, 3)
  const [first] = queue.peek(100, 1 << 20)
  t.match(
    first,
    { type: GAP_TYPE, time: 50_000, dropped: 1, types: 'sftp=1', sessions: 's-1', users: 'user-1', user: 'user-1', session_id: 's-1', since: 2001, until: 2001 },
    'the first drop is told at once',
  )
  // Sent, no answer yet: more drops wait for the next one, so that none is told twice.
  now = 60_000
  for (let n = 5; n <= 7; n++) queue.add(sftp(n))
  t.equal(queue.peek(100, 1 << 20)[0]!.id, first!.id, 'the one in flight is not changed')
  queue.close()
  const again = new AuditQueue({ path, maxEvents: 2, clock: () => now })
  t.teardown(() => again.close())
  t.equal(again.peek(100, 1 << 20)[0]!.id, first!.id, 'nor by a restart, which keeps the drops untold')
  again.remove([first!.id])
  const others = again.peek(100, 1 << 20)
  t.same(ids(others), ['sftp-0006', 'sftp-0007'], 'delivered: a batch of the others goes next, so that a flood of drops cannot hold them back')
  again.remove(ids(others))
  again.add(sftp(8))
  again.add(sftp(9))
  const [next] = again.peek(100, 1 << 20)
  t.match(
    next,
    { type: GAP_TYPE, time: 60_000, dropped: 4, types: 'sftp=4', sessions: 's-0,s-1,s-mallory', users: 'user-0,user-1,mallory', since: 2002, until: 2005 },
    'then the next one tells the rest',
  )
  t.notOk('user' in next! || 'session_id' in next!, 'three users: none is named as the user')
  t.equal(again.peek(100, 1 << 20).length, 1, 'alone')
  t.equal(again.dropped, 5)
  // An auth server of an earlier version refuses the type: given up, not told again without end.
  again.discard([again.peek(100, 1 << 20)[0]!.id])
  t.same(ids(again.peek(100, 1 << 20)), ['sftp-0008', 'sftp-0009'])
})

t.test('a way that does not take a type (a proxy of an earlier version) gets the others; those wait for a way that does', async (t) => {
  const queue = open(t, queuePath(t))
  const received: { way: string; types: string[] }[] = []
  let newer = false
  const way = (name: string, takes?: (type: string) => boolean) => ({
    maxBytes: 1 << 20,
    send: async (events: QueuedEvent[]) => {
      received.push({ way: name, types: events.map((event) => event.type) })
    },
    ...(takes ? { takes } : {}),
  })
  const sender = new AuditSender({
    queue,
    transport: () => (newer ? way('newer') : way('older', (type) => type !== 'recording.skipped')),
    refused: () => false,
    log: createLogger('test', { level: 'error' }),
  })
  t.teardown(() => sender.stop())
  sender.record('session.start', { session_id: 's-1', user: 'alice' })
  sender.record('recording.skipped', { session_id: 's-1', user: 'alice', reason: 'share' })
  sender.record('exec', { session_id: 's-1', user: 'alice', command: 'ls' })
  for (let i = 0; i < 100 && queue.size > 1; i++) await sleep(50)
  t.same(
    queue.peek(10, 1 << 20).map((event) => event.type),
    ['recording.skipped'],
    'the others went; it waits',
  )
  t.notOk(
    received.some(({ types }) => types.includes('recording.skipped')),
    'never to the way that does not take it',
  )
  newer = true
  sender.kick()
  for (let i = 0; i < 100 && queue.size > 0; i++) await sleep(50)
  t.equal(queue.size, 0)
  t.match(received.at(-1), { way: 'newer', types: ['recording.skipped'] }, 'it goes by a way that takes it')
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
  t.equal(queue.dropped, 2, 'the event, and the events.dropped event that told of it: refused too, and not told again')
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

t.test('drops that go on (a flood) do not keep the other events from being sent: a batch of them goes between two events.dropped', async (t) => {
  const queue = open(t, queuePath(t), { maxEvents: 5 })
  queue.add(event(1))
  for (let n = 1; n <= 10; n++) queue.add(sftp(n))
  const sent: string[] = []
  for (let round = 0; round < 6; round++) {
    const batch = queue.peek(100, 1 << 20)
    sent.push(...batch.map((e) => e.type))
    queue.remove(ids(batch))
    // The flood goes on while each batch is on its way.
    for (let n = 0; n < 8; n++) queue.add(sftp(100 + round * 10 + n))
  }
  t.ok(sent.includes('exec'), `the exec went out (${sent.slice(0, 12).join(' ')})`)
  t.ok(sent.filter((type) => type === GAP_TYPE).length >= 2, 'and the drops were told')
})

t.test('the journal is written again once it grows past a few times its bound, keeping what waits', async (t) => {
  const path = queuePath(t)
  const queue = open(t, path, { maxBytes: 64 * 1024 })
  for (let n = 0; n < 5000; n++) {
    queue.add(event(n, { command: 'x'.repeat(300) }))
    if (n % 2 === 0) queue.remove([event(n).id])
  }
  t.ok(statSync(path).size < 5 * 64 * 1024, `bounded (${statSync(path).size} bytes after 5,000 events)`)
  const waiting = queue.size
  queue.close()
  const again = open(t, path, { maxBytes: 64 * 1024 })
  t.equal(again.size, waiting, 'what waited is there after a restart')
})

t.test('the batch on its way is not dropped for room: what the auth server then receives is not told as dropped', async (t) => {
  const queue = open(t, queuePath(t), { maxEvents: 3 })
  for (let n = 1; n <= 3; n++) queue.add(sftp(n))
  const batch = queue.peek(2, 1 << 20)
  queue.sending(ids(batch))
  for (let n = 4; n <= 6; n++) queue.add(sftp(n))
  queue.remove(ids(batch))
  t.equal(queue.dropped, 3)
  t.match(takeGap(queue), { dropped: 1, since: 2003 }, 'the first one dropped is the oldest not on its way')
  t.same(ids(queue.peek(10, 1 << 20)), ['sftp-0006'], 'the two delivered, three dropped, the newest waits')
})

t.test("past the bulk kinds, the user holding the most goes first: one user's many sessions push out their own events, not another's", async (t) => {
  const queue = open(t, queuePath(t), { maxBytes: 8 * 1024 })
  const alice = session('s-alice', 'alice')
  const mallory = session('s-mallory', 'mallory')
  queue.add({ id: 'alice-exec', time: 1, type: 'exec', command: 'what alice ran', ...alice })
  for (let n = 0; n < 40; n++) queue.add({ id: `mallory-${n}`, time: 10 + n, type: 'exec', command: 'm'.repeat(600), ...mallory })
  t.ok(queue.dropped > 0, 'the queue was full')
  takeGaps(queue)
  const waiting = queue.peek(1000, 1 << 20)
  t.ok(
    waiting.some((event) => event.id === 'alice-exec'),
    "alice's event, the oldest, is kept",
  )
  t.notOk(
    waiting.some((event) => event.id === 'mallory-0'),
    "mallory's oldest went",
  )
})
