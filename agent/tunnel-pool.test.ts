// How the tunnel pool reads the live proxy set from what its proxies announce. Each proxy
// learns the set from the auth server every few seconds, so their words can briefly
// differ; the pool must neither drop a live proxy nor keep a departed one for long.

import t from 'tap'
import { EventEmitter } from 'node:events'
import { TunnelPool } from './tunnel-pool.ts'
import { createLogger } from '../shared/log.ts'

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
  }
}

/** A pool holding these tunnels (dialling stays off: its balancer address is never used). */
function poolHolding(...tunnels: HeldTunnel[]): { live: () => string[] | undefined; announce: () => void } {
  const pool = new TunnelPool({
    host: '127.0.0.1', port: 9, identity: {} as never, keepAliveIntervalMs: 15_000,
    labels: () => ({}), services: [], onStream: () => {}, log: createLogger('test', { level: 'error' }),
  })
  const internals = pool as unknown as { tunnels: Map<string, HeldTunnel>; stopped: boolean; liveSet(): Set<string> | undefined; onAnnounce(): void }
  internals.stopped = true
  for (const tunnel of tunnels) internals.tunnels.set(tunnel.proxyId, tunnel)
  return {
    live: () => {
      const set = internals.liveSet()
      return set && [...set].sort()
    },
    announce: () => internals.onAnnounce(),
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
