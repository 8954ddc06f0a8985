// How the tunnel pool reads the live proxy set from what its proxies announce. Each proxy
// learns the set from the auth server every few seconds, so their words can briefly
// differ; the pool must neither drop a live proxy nor keep a departed one for long.

import t, { type Test } from 'tap'
import { EventEmitter } from 'node:events'
import { DECLINES_IN_A_ROW_PER_PROXY, TunnelPool } from './tunnel-pool.ts'
import { AgentTunnel, HeldProxyError } from './tunnel.ts'
import { createLogger } from '../shared/log.ts'
import { until } from '../test/helpers/until.ts'

/** A held tunnel as the pool sees it: who it reaches, the latest set it heard, whether it was closed. */
class HeldTunnel extends EventEmitter {
  closed = false
  readonly proxyId: string
  announced?: string[]
  constructor(proxyId: string, announced?: string[]) {
    super()
    this.proxyId = proxyId
    this.announced = announced
  }
  close(): void {
    this.closed = true
    this.emit('close')
  }
  activate(): void {}
}

interface PoolInternals {
  tunnels: Map<string, HeldTunnel>
  liveSet(): Set<string> | undefined
  onAnnounce(spreadMs?: number): void
  fill(): Promise<void>
  adopt(tunnel: HeldTunnel): void
}

/**
 * A pool holding these tunnels. It never dials: its balancer address is never used, and
 * each time it would start dialling, `fills` counts it instead.
 */
function poolHolding(...tunnels: HeldTunnel[]): { pool: TunnelPool; live: () => string[] | undefined; announce: (spreadMs?: number) => void; fills: () => number } {
  const pool = new TunnelPool({
    host: '127.0.0.1', port: 9, identity: {} as never, keepAliveIntervalMs: 15_000,
    labels: () => ({}), services: [], onStream: () => {}, log: createLogger('test', { level: 'error' }),
  })
  const internals = pool as unknown as PoolInternals
  let fills = 0
  internals.fill = async () => {
    fills++
  }
  for (const tunnel of tunnels) internals.tunnels.set(tunnel.proxyId, tunnel)
  return {
    pool,
    live: () => {
      const set = internals.liveSet()
      return set && [...set].sort()
    },
    announce: (spreadMs?: number) => internals.onAnnounce(spreadMs),
    fills: () => fills,
  }
}

t.test('one proxy that has not heard of a new one yet does not make the pool drop it', async (t) => {
  const stale = new HeldTunnel('a', ['a', 'b'])
  const fresh = [new HeldTunnel('b', ['a', 'b', 'c']), new HeldTunnel('c', ['a', 'b', 'c'])]
  const pool = poolHolding(stale, ...fresh)
  t.same(pool.live(), ['a', 'b', 'c'])
  pool.announce()
  t.notOk([stale, ...fresh].some((tunnel) => tunnel.closed), 'no tunnel closed')
})

t.test('a proxy every other proxy leaves out has left, even if it still names itself', async (t) => {
  const cutOff = new HeldTunnel('z', ['a', 'z'])
  const other = new HeldTunnel('a', ['a'])
  const pool = poolHolding(cutOff, other)
  t.same(pool.live(), ['a'])
  pool.announce()
  t.ok(cutOff.closed, 'its tunnel is closed')
  t.notOk(other.closed)
})

t.test('a single proxy is taken at its word; empty or no sets say nothing', async (t) => {
  t.same(poolHolding(new HeldTunnel('a', ['a', 'b'])).live(), ['a', 'b'])
  t.equal(poolHolding(new HeldTunnel('a', [])).live(), undefined)
  t.equal(poolHolding(new HeldTunnel('a')).live(), undefined)
  t.equal(poolHolding().live(), undefined)
})

t.test('held lists the proxies held, sorted; heldCount counts them', async (t) => {
  const { pool } = poolHolding(new HeldTunnel('c'), new HeldTunnel('a'))
  t.same(pool.held, ['a', 'c'])
  t.equal(pool.heldCount, 2)
  t.equal(poolHolding().pool.heldCount, 0)
})

t.test('the first set heard starts dialling at once; the same set from another proxy does not', async (t) => {
  const a = new HeldTunnel('a', ['a', 'b', 'c'])
  const pool = poolHolding(a)
  pool.announce()
  t.equal(pool.fills(), 1, 'the first set starts the dials for b and c')
  // The whole fleet hears the second proxy repeat the set at the same moment: dialling on
  // it would bring every node to a returning proxy at once.
  const b = new HeldTunnel('b', ['a', 'b', 'c'])
  ;(pool.pool as unknown as PoolInternals).tunnels.set('b', b)
  pool.announce()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(pool.fills(), 1, 'no dials for a set already heard')
})

t.test('a proxy that joins the set is dialled within the announced spread, not at once', async (t) => {
  const a = new HeldTunnel('a', ['a', 'b'])
  const pool = poolHolding(a)
  pool.announce()
  t.equal(pool.fills(), 1)
  a.announced = ['a', 'b', 'c']
  const random = Math.random
  Math.random = () => 0.99
  t.teardown(() => {
    Math.random = random
  })
  pool.announce(400)
  Math.random = random
  t.equal(pool.fills(), 1, 'not dialled at once')
  // Drawn: 0.99 of the 400 ms spread. A timer due earlier always fires first.
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(pool.fills(), 1, 'not dialled a quarter of the way into the spread')
  await until('the spread dial', () => pool.fills() === 2, { timeoutMs: 5000, everyMs: 10 })
  t.equal(pool.fills(), 2, 'dialled once the drawn share of the spread has passed')
})

t.test('a tunnel closed because its proxy left the set is not redialled: its return is announced', async (t) => {
  const tunnels = ['a', 'b', 'c'].map((id) => new HeldTunnel(id, ['a', 'b', 'c']))
  const pool = poolHolding()
  const internals = pool.pool as unknown as PoolInternals
  for (const tunnel of tunnels) internals.adopt(tunnel)
  const before = pool.fills()
  const random = Math.random
  Math.random = () => 0
  t.teardown(() => {
    Math.random = random
  })
  // a and b say c left, before c's own goodbye reached this node.
  tunnels[0].announced = ['a', 'b']
  tunnels[1].announced = ['a', 'b']
  pool.announce()
  t.ok(tunnels[2].closed, "c's tunnel is closed")
  t.same(pool.pool.held, ['a', 'b'])
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(pool.fills(), before, 'no redial of its own')
})

/**
 * A pool holding a and b of the set a, b, c whose dials are answered by `answer` (the n-th
 * dial, from 0) instead of a balancer, and whose waits between rounds are counted, not slept.
 */
function poolDialling(t: Test, answer: (n: number) => Promise<HeldTunnel>): { pool: TunnelPool; dials: () => number; waits: number[]; start: () => void } {
  const pool = new TunnelPool({
    host: '127.0.0.1', port: 9, identity: { tlsCertPem: '', tlsKeyPem: '', hostCAPems: [] } as never, keepAliveIntervalMs: 15_000,
    labels: () => ({}), services: [], onStream: () => {}, log: createLogger('test', { level: 'error' }),
  })
  const internals = pool as unknown as PoolInternals & { sleep(ms: number): Promise<void> }
  for (const id of ['a', 'b']) internals.tunnels.set(id, new HeldTunnel(id, ['a', 'b', 'c']))
  const waits: number[] = []
  internals.sleep = async (ms: number) => {
    waits.push(ms)
  }
  let dials = 0
  const open = AgentTunnel.open
  AgentTunnel.open = (() => answer(dials++)) as unknown as typeof AgentTunnel.open
  t.teardown(() => {
    AgentTunnel.open = open
    pool.stop()
  })
  return { pool, dials: () => dials, waits, start: () => internals.onAnnounce() }
}

const declineLimit = DECLINES_IN_A_ROW_PER_PROXY * 3

t.test('declined single dials for the one missing proxy are retried at once, twice per proxy in a row', async (t) => {
  // Every dial but the last lands on a proxy already held, which declines it.
  const lucky = poolDialling(t, (n) => (n < declineLimit - 1 ? Promise.reject(new HeldProxyError()) : Promise.resolve(new HeldTunnel('c'))))
  lucky.start()
  await until('c held', () => lucky.pool.held.includes('c'), { timeoutMs: 5000, everyMs: 5 })
  t.equal(lucky.dials(), declineLimit, `${declineLimit - 1} declines, then c`)
  t.same(lucky.waits, [], 'no wait between them')
})

t.test('past that many declines in a row the pool waits before dialling again', async (t) => {
  const unlucky = poolDialling(t, (n) => (n < declineLimit ? Promise.reject(new HeldProxyError()) : Promise.resolve(new HeldTunnel('c'))))
  unlucky.start()
  await until('c held', () => unlucky.pool.held.includes('c'), { timeoutMs: 5000, everyMs: 5 })
  t.equal(unlucky.dials(), declineLimit + 1)
  t.equal(unlucky.waits.length, 1, `a wait after ${declineLimit} declines in a row`)
})
