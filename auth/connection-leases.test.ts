// Connection leases (max_connections) on both backends (SQLite, and a real etcd when
// installed): the limit, leases ending unless renewed, renewals and releases by the proxy
// that holds them, and proxies racing for a user's last slot. The clock of the leases is
// injected; the backend's own (its record TTL) is not needed.

import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { legacyAccess } from '../shared/access.ts'
import { createLogger, type LogFields } from '../shared/log.ts'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { refusal } from '../test/helpers/refusal.ts'
import { connectionLeaseRoutes } from './api/connection-leases.ts'
import type { AuthContext } from './api/context.ts'
import type { Backend } from './backend/backend.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import type { Peer } from './callers.ts'
import { ConnectionLeases, ConnectionLimitReached, LEASE_TTL_MS, leaseKey } from './connection-leases.ts'

interface World {
  backend: Backend
  clock: { now: number }
  leases: ConnectionLeases
}

async function world(t: Test, open: () => Promise<Backend>): Promise<World> {
  const backend = await open()
  t.teardown(() => backend.close())
  const clock = { now: Date.now() }
  return { backend, clock, leases: new ConnectionLeases({ backend, clock: () => clock.now }) }
}

function suite(name: string, open: () => Promise<Backend>): void {
  t.test(`${name}: a user takes up to max leases, then is refused (409) with the reason`, async (t) => {
    const w = await world(t, open)
    const first = await w.leases.acquire('alice', 2, 'proxy-a')
    t.equal(first.expires, w.clock.now + LEASE_TTL_MS)
    const second = await w.leases.acquire('alice', 2, 'proxy-b')
    t.not(first.leaseId, second.leaseId)
    const refused = await refusal(w.leases.acquire('alice', 2, 'proxy-a'))
    t.match(refused, { status: 409, message: 'user "alice" holds 2 connections, the most the roles allow (max_connections 2)' })
    t.same(Object.keys(await w.leases.held('alice')).sort(), [first.leaseId, second.leaseId].sort(), 'the refusal wrote nothing')
    t.ok(await w.leases.acquire('bob', 1, 'proxy-a'), 'another user counts apart')
    t.ok(await w.leases.acquire('alice', 3, 'proxy-a'), 'a larger limit (other roles) leaves room')
  })

  t.test(`${name}: leases not renewed end by themselves and free their slots`, async (t) => {
    const w = await world(t, open)
    await w.leases.acquire('alice', 1, 'proxy-a')
    t.match(await refusal(w.leases.acquire('alice', 1, 'proxy-b')), { status: 409 })
    w.clock.now += LEASE_TTL_MS - 1
    t.match(await refusal(w.leases.acquire('alice', 1, 'proxy-b')), { status: 409 }, 'still live a millisecond before it ends')
    w.clock.now += 1
    const taken = await w.leases.acquire('alice', 1, 'proxy-b')
    t.same(Object.keys(await w.leases.held('alice')), [taken.leaseId], 'the ended lease is gone from the record')
    const record = JSON.parse((await w.backend.get(leaseKey('alice')))!.value)
    t.same(Object.keys(record.leases), [taken.leaseId])
    t.equal(record.leases[taken.leaseId].proxy, 'proxy-b')
  })

  t.test(`${name}: renewals keep a proxy's own leases alive, and nothing else`, async (t) => {
    const w = await world(t, open)
    const a = await w.leases.acquire('alice', 2, 'proxy-a')
    const b = await w.leases.acquire('alice', 2, 'proxy-b')
    const c = await w.leases.acquire('carol', 1, 'proxy-a')
    w.clock.now += LEASE_TTL_MS / 3
    const renewed = await w.leases.renew('proxy-a', [
      { user: 'alice', lease_id: a.leaseId },
      { user: 'alice', lease_id: b.leaseId },
      { user: 'alice', lease_id: 'no-such-lease' },
      { user: 'carol', lease_id: c.leaseId },
      { user: 'dave', lease_id: 'nothing-here' },
    ])
    t.same(renewed.renewed.sort(), [a.leaseId, c.leaseId].sort(), "another proxy's lease and unknown ones are not renewed")
    t.equal(renewed.expires, w.clock.now + LEASE_TTL_MS)
    t.equal(await w.backend.get(leaseKey('dave')), undefined, 'renewing nothing writes nothing')
    w.clock.now = a.expires
    t.same(Object.keys(await w.leases.held('alice')), [a.leaseId], "past its first end the renewed lease lives, proxy-b's does not")
    t.match(await refusal(w.leases.acquire('carol', 1, 'proxy-b')), { status: 409 }, 'carol still holds hers')
    const late = await w.leases.renew('proxy-b', [{ user: 'alice', lease_id: b.leaseId }])
    t.same(late.renewed, [], 'an ended lease is not renewed')
    w.clock.now = renewed.expires
    t.same((await w.leases.renew('proxy-a', [{ user: 'alice', lease_id: a.leaseId }])).renewed, [], 'nor one renewed too late')
    t.equal(await w.backend.get(leaseKey('alice')), undefined, 'and the record left without leases is deleted')
  })

  t.test(`${name}: a release frees the slot at once; the record goes with the last lease`, async (t) => {
    const w = await world(t, open)
    const a = await w.leases.acquire('alice', 2, 'proxy-a')
    const b = await w.leases.acquire('alice', 2, 'proxy-b')
    await w.leases.release('proxy-b', [{ user: 'alice', lease_id: a.leaseId }])
    t.equal(Object.keys(await w.leases.held('alice')).length, 2, "a proxy cannot release another's lease")
    await w.leases.release('proxy-a', [
      { user: 'alice', lease_id: a.leaseId },
      { user: 'alice', lease_id: 'unknown' },
    ])
    t.same(Object.keys(await w.leases.held('alice')), [b.leaseId])
    t.ok(await w.leases.acquire('alice', 2, 'proxy-a'), 'the released slot is free')
    const held = Object.keys(await w.leases.held('alice'))
    await w.leases.release(
      'proxy-a',
      held.filter((id) => id !== b.leaseId).map((lease_id) => ({ user: 'alice', lease_id })),
    )
    await w.leases.release('proxy-b', [{ user: 'alice', lease_id: b.leaseId }])
    t.equal(await w.backend.get(leaseKey('alice')), undefined, 'no record is left')
    await w.leases.release('proxy-b', [{ user: 'alice', lease_id: b.leaseId }])
    t.equal(await w.backend.get(leaseKey('alice')), undefined, 'releasing again writes nothing')
  })

  t.test(`${name}: the record expires in the backend, so abandoned ones vanish`, async (t) => {
    const w = await world(t, open)
    await w.leases.acquire('alice', 1, 'proxy-a')
    const item = await w.backend.get(leaseKey('alice'))
    t.ok(item?.expires, 'written with a TTL')
    t.ok(item!.expires! - Date.now() > LEASE_TTL_MS, 'that outlives its leases')
  })

  t.test(`${name}: proxies racing for the last slot: exactly one wins`, async (t) => {
    const w = await world(t, open)
    let lostRaces = 0
    const txn = w.backend.txn.bind(w.backend)
    w.backend.txn = async (conditions, operations) => {
      const applied = await txn(conditions, operations)
      if (!applied) lostRaces++
      return applied
    }
    const other = new ConnectionLeases({ backend: w.backend, clock: () => w.clock.now })
    await w.leases.acquire('alice', 3, 'proxy-a')
    await w.leases.acquire('alice', 3, 'proxy-b')
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? w.leases : other).acquire('alice', 3, i % 2 === 0 ? 'proxy-a' : 'proxy-b')))
    const won = results.filter((r) => r.status === 'fulfilled')
    const lost = results.filter((r) => r.status === 'rejected')
    t.equal(won.length, 1, 'one acquire won')
    t.equal(lost.length, 7)
    t.ok(
      lost.every((r) => r.reason instanceof ConnectionLimitReached),
      'the others were refused by the limit',
    )
    t.equal(Object.keys(await w.leases.held('alice')).length, 3)
    t.ok(lostRaces > 0, `the acquires raced (${lostRaces} writes lost and were tried again)`)

    // Every slot free, many racers: exactly max of them win.
    const fresh = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? w.leases : other).acquire('bob', 4, `proxy-${i % 2}`)))
    t.equal(fresh.filter((r) => r.status === 'fulfilled').length, 4)
    t.equal(Object.keys(await w.leases.held('bob')).length, 4)
  })
}

onEveryBackend('connection-leases', suite)

t.test('routes: the proxy is the caller, for the user it vouches for; a refusal is a 409 and is logged without secrets', async (t) => {
  const backend = await SqliteBackend.open(join(tempDir(), 'backend.db'))
  t.teardown(() => backend.close())
  const logged: { message: string; fields?: LogFields }[] = []
  const log = { ...createLogger('test', { level: 'error' }), info: (message: string, fields?: LogFields) => logged.push({ message, fields }) }
  const context = { connectionLeases: new ConnectionLeases({ backend }), log } as unknown as AuthContext
  const peer = (proxyId: string): Peer => ({ kind: 'host', subject: { commonName: proxyId, cluster: 'test', roles: ['proxy'] } })
  const call = (proxyId: string, body: unknown) => ({ peer: peer(proxyId), body: async () => body }) as never
  /** The user a proxy vouches for, as access.ts admits them: the name and the limit are their certificate's. */
  const vouched = (proxyId: string, user: string, max?: number) =>
    ({
      peer: {
        kind: 'user',
        subject: { commonName: user, cluster: 'test', roles: ['user'] },
        via: proxyId,
        admin: false,
        access: { ...legacyAccess(['pi']), ...(max ? { max_connections: max } : {}) },
      },
    }) as never
  const routes = connectionLeaseRoutes
  const acquire = routes['POST /v1/proxies/connection-leases']

  t.match(await refusal(acquire.handle(call('proxy-a', undefined), context)), { status: 403 }, "a proxy's own word names no user")
  t.match(await refusal(acquire.handle(vouched('proxy-a', 'carol'), context)), { status: 400, message: /set no max_connections/ })
  const lease = await acquire.handle(vouched('proxy-a', 'alice', 1), context)
  t.match(lease, { lease_id: String, expires: Number })
  t.match(await refusal(acquire.handle(vouched('proxy-b', 'alice', 1), context)), {
    status: 409,
    message: /user "alice" holds 1 connection, the most the roles allow/,
  })
  t.same(
    logged.map((entry) => entry.fields),
    [{ user: 'alice', max: 1, held: 1, proxy: 'proxy-b' }],
  )

  const leases = [{ user: 'alice', lease_id: lease.lease_id }]
  t.same((await routes['POST /v1/proxies/connection-leases/renew'].handle(call('proxy-b', { leases }), context)).renewed, [], "proxy-b cannot renew proxy-a's lease")
  t.same((await routes['POST /v1/proxies/connection-leases/renew'].handle(call('proxy-a', { leases }), context)).renewed, [lease.lease_id])
  t.same(await routes['POST /v1/proxies/connection-leases/release'].handle(call('proxy-a', { leases }), context), {})
  t.ok(await acquire.handle(vouched('proxy-b', 'alice', 1), context), 'the slot is free again')
})
