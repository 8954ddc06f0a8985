// The order in which waiting connections get handshake slots, with the handshakes started
// by hand: sources take turns, one source runs only its share, clients resuming a session
// go first into slots of their own, and limits close connections rather than queue them.

import { Socket } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import { createLogger } from '../log.ts'
import { type GateConfig, resolveGateConfig } from './config.ts'
import { HandshakeSlots } from './handshake-slots.ts'
import { GateStats } from './stats.ts'

function harness(config: Partial<GateConfig>) {
  const stats = new GateStats()
  let now = 0
  const log = createLogger('test', { level: 'error', stream: new Writable({ write: (_c, _e, done) => done() }) })
  const slots = new HandshakeSlots(resolveGateConfig(config), stats, log, () => now)
  const started: string[] = []
  const releases = new Map<string, () => void>()
  const sockets = new Map<string, Socket>()
  /** `name` is `group:n`, or `group:n:r` for a client resuming a session. */
  const dial = (name: string) => {
    const [group, , resuming] = name.split(':')
    const socket = new Socket()
    sockets.set(name, socket)
    slots.request({
      socket,
      group,
      resuming: resuming === 'r',
      start: (release) => {
        started.push(name)
        releases.set(name, release)
      },
    })
  }
  return {
    stats,
    started,
    dial,
    finish: (name: string) => releases.get(name)!(),
    closed: (name: string) => sockets.get(name)!.destroyed,
    close: (name: string) => sockets.get(name)!.destroy(),
    advance: (ms: number) => (now += ms),
  }
}

t.test('sources take turns, whatever order they arrived in', async (t) => {
  const h = harness({ maxHandshakes: 1, reservedForResumption: 0 })
  for (const name of ['a:1', 'a:2', 'a:3', 'a:4', 'b:1', 'c:1', 'b:2']) h.dial(name)
  t.same(h.started, ['a:1'])
  for (const name of ['a:1', 'a:2', 'b:1', 'c:1', 'a:3', 'b:2']) h.finish(name)
  t.same(h.started, ['a:1', 'a:2', 'b:1', 'c:1', 'a:3', 'b:2', 'a:4'], "a, then b and c in between a's")
})

t.test('one source runs at most its share; others use the rest', async (t) => {
  const h = harness({ maxHandshakes: 4, reservedForResumption: 0, maxHandshakesPerAddress: 2 })
  for (const name of ['a:1', 'a:2', 'a:3', 'b:1']) h.dial(name)
  t.same(h.started, ['a:1', 'a:2', 'b:1'], "a's third waits though a slot is free")
  t.equal(h.stats.queued, 1)
  h.finish('a:1')
  t.same(h.started, ['a:1', 'a:2', 'b:1', 'a:3'])
})

t.test("a trusted balancer's own connections (no source group) are not held to a source's share", async (t) => {
  const stats = new GateStats()
  const log = createLogger('test', { level: 'error', stream: new Writable({ write: (_c, _e, done) => done() }) })
  const slots = new HandshakeSlots(resolveGateConfig({ maxHandshakes: 4, reservedForResumption: 0, maxHandshakesPerAddress: 1 }), stats, log)
  for (let i = 0; i < 3; i++) slots.request({ socket: new Socket(), group: undefined, resuming: false, start: () => {} })
  t.equal(stats.handshaking, 3)
})

t.test('clients resuming a session have slots no one else takes, and go first', async (t) => {
  const h = harness({ maxHandshakes: 3, reservedForResumption: 1 })
  for (const name of ['a:1', 'b:1', 'c:1', 'd:1']) h.dial(name)
  t.same(h.started, ['a:1', 'b:1'], 'fresh handshakes leave the reserved slot free')
  h.dial('e:1:r')
  t.same(h.started, ['a:1', 'b:1', 'e:1:r'], 'a resuming client takes it at once')
  h.dial('f:1:r')
  h.finish('a:1')
  t.same(h.started.slice(3), ['f:1:r'], 'and goes before those who waited longer')
  t.equal(h.stats.resumingStarted, 2)
})

t.test("limits close connections: a full queue, a source's share of it, a wait too long", async (t) => {
  const h = harness({ maxHandshakes: 1, reservedForResumption: 0, handshakeQueue: 4, maxQueuedPerAddress: 2, handshakeQueueWaitMs: 1000 })
  for (const name of ['a:0', 'a:1', 'a:2', 'a:3']) h.dial(name)
  t.ok(h.closed('a:3'), 'a third waiting from one source is closed')
  t.equal(h.stats.handshakePerAddressRefused, 1)
  h.dial('b:1')
  h.dial('c:1')
  h.dial('d:1')
  t.ok(h.closed('d:1'), 'a fifth waiting is closed: the queue is full')
  t.equal(h.stats.queueFullClosed, 1)
  h.advance(1500)
  h.dial('e:1')
  t.notOk(h.closed('e:1'), 'once those waiting have waited too long, they make room')
  t.equal(h.stats.queueWaitClosed, 4)
  h.finish('a:0')
  t.same(h.started, ['a:0', 'e:1'])
})

t.test('a connection that closes while it waits leaves the queue', async (t) => {
  const h = harness({ maxHandshakes: 1, reservedForResumption: 0 })
  for (const name of ['a:1', 'b:1', 'c:1']) h.dial(name)
  h.close('b:1')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(h.stats.queued, 1)
  h.finish('a:1')
  t.same(h.started, ['a:1', 'c:1'])
})
