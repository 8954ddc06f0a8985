// The node's audit queue on a real file: what is queued survives a restart (and a line torn
// by a crash), what the auth server acknowledged does not come back, and the bounds drop
// the oldest events first and count them. Then the sender: a batch is removed only after a
// send succeeds, and sent again after a failure.

import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
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
