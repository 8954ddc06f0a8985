// The tunnel pool: its policy (which proxies to hold, when to dial) from plain inputs, then
// the pool itself driven by a scripted dialer and a clock that moves only when told.
// Each proxy learns the live set from the auth server every few seconds, so their words can
// briefly differ; the pool must neither drop a live proxy nor keep a departed one for long.

import { EventEmitter } from 'node:events'
import t from 'tap'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { createLogger } from '../shared/log.ts'
import { HeldProxyError, type TunnelOptions, type TunnelRefused } from './tunnel.ts'
import { DECLINES_IN_A_ROW_PER_PROXY, LOSS_SPREAD_MS, newestSet, REFUSAL_BACKOFF, TunnelPolicy } from './tunnel-policy.ts'
import { type PoolClock, type PoolTunnel, TunnelPoolOf } from './tunnel-pool.ts'

/** A set a proxy announced: its IDs alone, or with the time the auth server signed it. */
type Announced = string[] | { ids: string[]; at: number } | undefined

/** Sets given as IDs alone were signed at this time, later with every call of held(). */
let signedAt = 1000

/** Held tunnels as the policy reads them: proxy ID → the set it announced. */
function held(entries: Record<string, Announced>): Map<string, { announced?: string[]; announcedAt?: number }> {
  const at = ++signedAt
  return new Map(
    Object.entries(entries).map(([id, set]) => [
      id,
      set === undefined ? {} : Array.isArray(set) ? { announced: set, announcedAt: at } : { announced: set.ids, announcedAt: set.at },
    ]),
  )
}

function policy(random = () => 0.5): TunnelPolicy {
  return new TunnelPolicy({ random })
}

t.test('policy: the live set', async (t) => {
  t.test('the newest set decides, whichever proxy relayed it: one that has not heard of a new proxy yet does not make the pool drop it', async (t) => {
    const tunnels = held({ a: { ids: ['a', 'b'], at: 1 }, b: { ids: ['a', 'b', 'c'], at: 2 }, c: { ids: ['a', 'b', 'c'], at: 2 } })
    t.same(newestSet(tunnels), { ids: ['a', 'b', 'c'], at: 2 })
    const p = policy()
    t.same(p.announced(tunnels)?.close, [], 'no tunnel closed')
    t.same(p.liveSet, ['a', 'b', 'c'])
  })

  t.test('a proxy outside the newest set has left, even if it still names itself', async (t) => {
    const tunnels = held({ z: { ids: ['a', 'z'], at: 1 }, a: { ids: ['a'], at: 2 } })
    t.same(policy().announced(tunnels)?.close, ['z'], 'its tunnel is closed')
  })

  t.test('a set older than the newest heard is passed over, even when its proxy is the only one left to say it', async (t) => {
    const p = policy()
    p.announced(held({ a: { ids: ['a', 'b'], at: 5 }, b: { ids: ['a', 'b'], at: 5 } }))
    const replay = p.announced(held({ b: { ids: ['b'], at: 3 }, a: { ids: ['a', 'b'], at: 5 } }))
    t.same(replay, { close: [], dial: 'wake' }, 'no tunnel closed, no dial')
    t.same(p.liveSet, ['a', 'b'])
    // The only tunnel left is to a proxy the newest set leaves out; it repeats a set from before.
    const alone = p.announced(held({ z: { ids: ['a', 'b', 'z'], at: 4 } }))
    t.same(alone?.close, [], 'the last tunnel is kept')
    t.same(p.liveSet, ['a', 'b'], 'the older set is not taken')
    t.same(p.announced(held({ z: { ids: ['a', 'b', 'z'], at: 4 }, a: { ids: ['a', 'b'], at: 5 } }))?.close, ['z'], 'and closed once another is held')
  })

  t.test('empty or no sets say nothing', async (t) => {
    t.same(newestSet(held({ a: ['a', 'b'] }))?.ids, ['a', 'b'])
    t.equal(newestSet(held({ a: [] })), undefined)
    t.equal(newestSet(held({ a: undefined })), undefined)
    t.equal(newestSet(held({})), undefined)
    t.equal(policy().announced(held({ a: undefined })), undefined, 'no decision before a set is heard')
  })

  t.test('one tunnel is always kept, even to a proxy outside the set', async (t) => {
    t.same(policy().announced(held({ a: ['b'] }))?.close, [])
    t.same(policy().announced(held({ a: ['c'], b: ['c'] }))?.close, ['a'], 'all but the last')
  })
})

t.test('policy: when to dial', async (t) => {
  t.test('before a set is heard one dial at a time; then full rounds while two or more are missing, single dials for one', async (t) => {
    const p = policy()
    t.equal(p.roundSize(held({})), 1)
    t.equal(p.roundSize(held({ a: undefined })), 0, 'one tunnel held waits for its set')
    t.ok(p.wants('x'), 'any proxy is wanted before a set is known')
    p.announced(held({ a: ['a', 'b', 'c'] }))
    t.equal(p.roundSize(held({ a: ['a', 'b', 'c'] })), 3)
    t.equal(p.roundSize(held({ a: ['a', 'b', 'c'], b: ['a', 'b', 'c'] })), 1)
    t.equal(p.roundSize(held({ a: [], b: [], c: [] })), 0)
    t.notOk(p.wants('x'))
    t.ok(p.wants('c'))
  })

  t.test('the first set heard starts dialling at once; the same set from another proxy does not', async (t) => {
    const p = policy()
    t.same(p.announced(held({ a: ['a', 'b', 'c'] }))?.dial, 'now', 'the first set starts the dials for b and c')
    // The whole fleet hears the second proxy repeat the set at the same moment: dialling on
    // it would bring every node to a returning proxy at once.
    t.same(p.announced(held({ a: ['a', 'b', 'c'], b: ['a', 'b', 'c'] }))?.dial, 'wake', 'no dials for a set already heard')
  })

  t.test('a proxy that joins the set is dialled within the announced spread, not at once', async (t) => {
    const p = policy(() => 0.99)
    p.announced(held({ a: ['a', 'b'] }))
    t.same(p.announced(held({ a: ['a', 'b', 'c'] }), 400)?.dial, { afterMs: 396 }, 'the drawn share of the 400 ms spread')
    t.same(policy(() => 0.5).announced(held({ a: ['a'] })), { close: [], dial: 'now' })
  })

  t.test('a tunnel lost to a proxy that left the set is not redialled: its return is announced', async (t) => {
    const p = policy()
    p.announced(held({ a: ['a', 'b'], b: ['a', 'b'] }))
    p.announced(held({ a: ['a', 'b'], b: ['a', 'b'], c: ['a', 'b'] }))
    t.same(p.lost('c', false, 2), { kind: 'left' })
  })

  t.test('a proxy that says it is stopping is left until the others have looked at the set again', async (t) => {
    const p = policy()
    p.announced(held({ a: ['a', 'b'], b: ['a', 'b'] }))
    const decision = p.lost('b', true, 1)
    t.equal(decision.kind, 'stopping')
    t.notOk(p.wants('b'), 'no dials for it meanwhile')
    t.equal(p.roundSize(held({ a: ['a', 'b'] })), 0)
  })

  t.test('a tunnel lost otherwise is redialled within the loss spread, or at once when it was the last', async (t) => {
    const p = policy(() => 0.5)
    p.announced(held({ a: ['a', 'b'], b: ['a', 'b'] }))
    t.same(p.lost('b', false, 1), { kind: 'redial', afterMs: LOSS_SPREAD_MS / 2 })
    t.same(p.lost('a', false, 0), { kind: 'redial' })
    t.same(p.lost('a', true, 0), { kind: 'redial' }, 'a stopping proxy too, when it was the last held')
  })

  const declineLimit = DECLINES_IN_A_ROW_PER_PROXY * 3
  const declined = { size: 1, adopted: 0, duplicates: 0, declined: 1, failed: false }

  t.test('declined single dials for the one missing proxy are retried at once, twice per proxy in a row; then the pool waits', async (t) => {
    const p = policy(() => 0.999)
    p.announced(held({ a: ['a', 'b', 'c'] }))
    const waits = Array.from({ length: declineLimit }, () => p.afterRound(declined))
    t.same(waits.slice(0, -1), new Array(declineLimit - 1).fill(undefined), `${declineLimit - 1} declines retried at once`)
    t.equal(waits.at(-1), 499, 'then a wait in the first backoff window (0.5 s)')
    t.equal(p.afterRound(declined), undefined, 'the count starts again')
  })

  t.test('a failure makes the next round wait, longer each time, until a tunnel is adopted', async (t) => {
    const p = policy(() => 0.999)
    p.announced(held({ a: ['a', 'b', 'c'] }))
    const failed = { size: 3, adopted: 0, duplicates: 0, declined: 0, failed: true }
    t.same([p.afterRound(failed), p.afterRound(failed), p.afterRound({ ...failed, adopted: 1 })], [499, 999, 1998], 'even a round that adopted one waits after a failure')
    t.equal(p.afterRound({ ...failed, failed: false, adopted: 1 }), undefined, 'a tunnel adopted without failure: dial on at once')
    t.equal(p.afterRound(failed), 499, 'and the window starts again')
  })
})

/** A tunnel as a proxy would answer: it announces sets and closes when told. */
class FakeTunnel extends EventEmitter implements PoolTunnel {
  /** When the auth server "signed" each set: every set announced is newer than the one before. */
  static signedAt = 0
  readonly proxyId: string
  announced?: string[]
  announcedAt?: number
  leaving = false
  resumed = false
  activated = false
  closed = false
  refusal?: TunnelRefused
  /** The proxy refuses the tunnel at its hello, and closes it a moment later. */
  private readonly refuseWith?: TunnelRefused

  constructor(proxyId: string, announced?: string[], refuseWith?: TunnelRefused) {
    super()
    this.proxyId = proxyId
    this.announced = announced
    this.refuseWith = refuseWith
    if (announced) this.announcedAt = ++FakeTunnel.signedAt
  }

  activate(): void {
    this.activated = true
    if (!this.refuseWith) return
    this.refusal = this.refuseWith
    queueMicrotask(() => this.close())
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.emit('close')
  }

  sendLabels(): void {}
  sendCertificate(): void {}

  /** The proxy announces the live set. */
  announce(ids: string[]): void {
    this.announced = ids
    this.announcedAt = ++FakeTunnel.signedAt
    this.emit('proxies', ids)
  }
}

/** Time that moves only through advance(). */
class ManualClock implements PoolClock {
  now = 0
  private calls: { at: number; callback: () => void }[] = []

  after(ms: number, callback: () => void): () => void {
    const call = { at: this.now + ms, callback }
    this.calls.push(call)
    return () => {
      this.calls = this.calls.filter((other) => other !== call)
    }
  }

  /** The delays of the calls waiting, from now. */
  get waiting(): number[] {
    return this.calls.map((call) => call.at - this.now)
  }

  /** Moves on by `ms`, making each call that falls due in turn, and lets what it started settle. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms
    for (;;) {
      const due = this.calls.filter((call) => call.at <= end).sort((x, y) => x.at - y.at)[0]
      if (!due) break
      this.calls = this.calls.filter((call) => call !== due)
      this.now = due.at
      due.callback()
      await settled()
    }
    this.now = end
  }
}

/** Lets every promise chain already started run to its end (the dialer answers without I/O). */
function settled(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

const identity: NodeIdentity = {
  hostId: 'h',
  nodename: 'n',
  clusterName: 'c',
  roles: ['node'],
  authServers: [],
  tlsKeyPem: '',
  tlsCertPem: '',
  sshKeyPem: '',
  sshCert: '',
  hostCAPems: [],
  userCASshKeys: [],
  trustVersion: 0,
}

/** A pool whose n-th dial (from 0) is answered by `answer`, on a manual clock. */
function pool(answer: (n: number, options: TunnelOptions) => Promise<FakeTunnel>, random = () => 0.5) {
  const clock = new ManualClock()
  let dials = 0
  const tunnels = new TunnelPoolOf<FakeTunnel>(
    {
      host: '127.0.0.1',
      port: 9,
      identity,
      keepAliveIntervalMs: 15_000,
      labels: () => ({}),
      services: [],
      onStream: () => {},
      log: createLogger('test', { level: 'error' }),
    },
    { dial: (options) => answer(dials++, options), clock, random },
  )
  return { pool: tunnels, clock, dials: () => dials }
}

t.test('pool: the first dial learns the set, a single dial fetches the one proxy missing', async (t) => {
  const answers = [new FakeTunnel('c', ['a', 'c']), new FakeTunnel('a', ['a', 'c'])]
  const seen: string[][] = []
  const { pool: p, dials } = pool((n, options) => {
    seen.push(options.held ?? [])
    return Promise.resolve(answers[n]!)
  })
  p.start()
  await settled()
  t.same(p.held, ['a', 'c'], 'held lists the proxies held, sorted')
  t.equal(p.heldCount, 2)
  t.equal(dials(), 2)
  t.same(seen, [[], ['c']], 'each dial names the proxies held, which decline it at once')
  t.ok(
    answers.every((tunnel) => tunnel.activated),
    'each tunnel kept says hello',
  )
  p.stop()
  t.ok(
    answers.every((tunnel) => tunnel.closed),
    'stop closes every tunnel',
  )
  t.equal(p.heldCount, 0)
})

/** A pool holding a, b and c (a round of three dials after the first, one of them a duplicate); later dials reach c. */
async function poolOfThree(random?: () => number) {
  const set = ['a', 'b', 'c']
  const answers = [new FakeTunnel('a', set), new FakeTunnel('b', set), new FakeTunnel('c', set), new FakeTunnel('b', set)]
  const made = pool((n) => Promise.resolve(answers[n] ?? new FakeTunnel('c', set)), random)
  made.pool.start()
  await settled()
  return { ...made, a: answers[0]!, b: answers[1]!, c: answers[2]!, duplicate: answers[3]! }
}

t.test('pool: a full round after the first dial; a duplicate is closed', async (t) => {
  const { pool: p, dials, duplicate, clock } = await poolOfThree()
  t.same(p.held, ['a', 'b', 'c'])
  t.equal(dials(), 4)
  t.ok(duplicate.closed, 'the second tunnel to b is closed')
  t.same(clock.waiting, [], 'no wait pending')
})

t.test('pool: a tunnel closed because its proxy left the set is not redialled', async (t) => {
  const { pool: p, dials, a, b, c, clock } = await poolOfThree()
  // a and b say c left, before c's own goodbye reached this node.
  a.announced = ['a', 'b']
  b.announce(['a', 'b'])
  t.ok(c.closed, "c's tunnel is closed")
  t.same(p.held, ['a', 'b'])
  await clock.advance(60_000)
  t.equal(dials(), 4, 'no redial of its own')
})

t.test('pool: a tunnel to a proxy outside the newest set is closed at once, repeating an older set or none, and the next round waits', async (t) => {
  // z was removed before the node started: its set is older than the one a, b and c announce.
  const removedOlder = new FakeTunnel('z', ['a', 'b', 'z'])
  const removedSilent = new FakeTunnel('z')
  const set = ['a', 'b', 'c']
  const [a, b, c] = [new FakeTunnel('a', set), new FakeTunnel('b', set), new FakeTunnel('c', set)]
  // The first dial reaches a; the full round b, c and b again; then, looking for c, z twice.
  const answers = [a, b, c, new FakeTunnel('b', set), removedOlder, removedSilent]
  const { pool: p, clock } = pool(
    (n) => Promise.resolve(answers[n] ?? new FakeTunnel('c', set)),
    () => 0.5,
  )
  p.start()
  await settled()
  t.same(p.held, ['a', 'b', 'c'])
  c.close()
  await clock.advance(LOSS_SPREAD_MS / 2)
  t.ok(removedOlder.closed, 'the tunnel to z, which repeats a set older than the newest, is closed')
  t.same(p.held, ['a', 'b'])
  t.equal(clock.waiting.length, 1, 'the pool waits before the next round')
  await clock.advance(clock.waiting[0]!)
  t.ok(removedSilent.closed, 'a tunnel to z that announces nothing is closed too')
  t.same(p.held, ['a', 'b'])
  await clock.advance(clock.waiting[0]!)
  t.same(p.held, ['a', 'b', 'c'], 'c is held again')
  t.same(p.announcedSet, set)
})

t.test('pool: a tunnel lost otherwise is redialled once the drawn share of the loss spread has passed', async (t) => {
  const { pool: p, dials, c, clock } = await poolOfThree(() => 0.5)
  c.close()
  t.same(p.held, ['a', 'b'])
  t.same(clock.waiting, [LOSS_SPREAD_MS / 2])
  await clock.advance(LOSS_SPREAD_MS / 2 - 1)
  t.equal(dials(), 4, 'not before')
  await clock.advance(1)
  t.equal(dials(), 5, 'then one dial')
  t.same(p.held, ['a', 'b', 'c'])
})

t.test("pool: a tunnel refused at its hello is dialled again after a window that grows, capped, and the proxy's wait when longer", async (t) => {
  const refusals: { reason: string; retryInMs: number }[] = []
  const clock = new ManualClock()
  let dials = 0
  let refuse: TunnelRefused | undefined = { reason: 'unregistered' }
  const p = new TunnelPoolOf<FakeTunnel>(
    {
      host: '127.0.0.1',
      port: 9,
      identity,
      keepAliveIntervalMs: 15_000,
      labels: () => ({}),
      services: [],
      onStream: () => {},
      log: createLogger('test', { level: 'error' }),
      onRefused: (_tunnel, refusal, retryInMs) => refusals.push({ reason: refusal.reason, retryInMs }),
    },
    {
      dial: () => {
        dials++
        return Promise.resolve(new FakeTunnel('a', ['a'], refuse))
      },
      clock,
      random: () => 0.999,
    },
  )
  p.start()
  await settled()
  t.equal(dials, 1)
  const waits: number[] = []
  for (let i = 0; i < 8; i++) {
    t.equal(clock.waiting.length, 1, 'one dial waits')
    waits.push(clock.waiting[0]!)
    await clock.advance(clock.waiting[0]!)
  }
  t.same(waits, [999, 1998, 3996, 7992, 15984, 31968, 59940, 59940], 'the window doubles from 1 s up to the cap, as after failed dials')
  t.equal(dials, 9, 'one dial per window: never at once')
  t.equal(REFUSAL_BACKOFF.capMs, 60_000)
  t.same(refusals.at(-1), { reason: 'unregistered', retryInMs: 59940 }, 'the agent hears each refusal and the wait')

  refuse = { reason: 'rate_limited', retryAfterMs: 120_000 }
  await clock.advance(clock.waiting[0]!)
  t.same(clock.waiting, [120_000], "the proxy's wait, when longer")
  refuse = undefined
  await clock.advance(120_000)
  t.same(p.held, ['a'], 'held once the proxy takes it')
  refuse = { reason: 'rate_limited' }
  p.all[0]!.close()
  await settled()
  t.same(clock.waiting, [999], 'a tunnel that ended otherwise starts the window again')
  p.stop()
})

t.test('pool: declined dials are retried at once up to the limit, then after a wait', async (t) => {
  const declineLimit = DECLINES_IN_A_ROW_PER_PROXY * 3
  const set = ['a', 'b', 'c']
  const start = [new FakeTunnel('a', set), new FakeTunnel('b', set)]
  // After a and b (the first dial, then a round of three of which two are declined and one
  // fails), every dial lands on a or b until the last.
  const {
    pool: p,
    clock,
    dials,
  } = pool(
    (n) => {
      if (n < 2) return Promise.resolve(start[n]!)
      if (n === 2) return Promise.reject(new HeldProxyError())
      if (n === 3) return Promise.reject(new Error('timed out connecting the tunnel'))
      return n < 4 + declineLimit ? Promise.reject(new HeldProxyError()) : Promise.resolve(new FakeTunnel('c', set))
    },
    () => 0.999,
  )
  p.start()
  await settled()
  t.same(p.held, ['a', 'b'])
  t.same(clock.waiting, [499], 'a failure: the next round waits')
  await clock.advance(499)
  t.equal(dials(), 4 + declineLimit, `then ${declineLimit} single dials, all declined`)
  t.same(clock.waiting, [499], 'a wait after that many declines in a row')
  await clock.advance(499)
  t.same(p.held, ['a', 'b', 'c'])
  t.same(clock.waiting, [], 'complete: nothing waits')
})
