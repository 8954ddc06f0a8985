// Locks, removal records, the auth server's view of them and the offline sweep, on both
// backends (SQLite, and a real etcd when installed): every condition they write with must
// hold the same on each. Clocks are injected where the logic reads the time.

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { refusal } from '../test/helpers/refusal.ts'
import type { Backend } from './backend/backend.ts'
import { describeTarget, Locks, lockReason } from './locks.ts'
import { NodeDirectory, type NodeRecord, PRESENCE, type Presence, registerNodeOperation } from './nodes.ts'
import { OfflineSweep } from './offline-nodes.ts'
import { Revocations } from './revocations.ts'
import { USER_CERT_BACKDATE_MS, UserDirectory } from './users.ts'

const log = createLogger('test', { level: 'error' })
const DAY = 24 * 3600_000

interface World {
  backend: Backend
  nodes: NodeDirectory
  locks: Locks
  revocations: Revocations
  clock: { now: number }
  changes: number
}

async function world(t: Test, open: () => Promise<Backend>): Promise<World> {
  const backend = await open()
  t.teardown(() => backend.close())
  const clock = { now: Date.now() }
  const nodes = new NodeDirectory(backend, 30_000)
  const users = new UserDirectory(backend)
  await users.add('alice', ['root'])
  const w: World = { backend, nodes, clock, changes: 0, locks: new Locks({ backend, nodes, users, clock: () => clock.now }), revocations: undefined as unknown as Revocations }
  w.revocations = new Revocations({ backend, recoveryWindowMs: 365 * DAY, onChange: () => w.changes++, log, clock: () => clock.now })
  return w
}

async function register(backend: Backend, nodename: string, extra: Partial<NodeRecord> = {}): Promise<NodeRecord> {
  const record: NodeRecord = { hostId: randomUUID(), nodename, roles: ['node'], joinedAt: Date.now(), tlsKeySha256: 'ab'.repeat(32), ...extra }
  await backend.txn([], [registerNodeOperation(record), { op: 'put', key: `/nodenames/${nodename}`, value: JSON.stringify({ hostId: record.hostId }) }])
  return record
}

function suite(name: string, open: () => Promise<Backend>): void {
  t.test(`${name}: a node lock names the registered host and refuses it until it ends`, async (t) => {
    const w = await world(t, open)
    const pi = await register(w.backend, 'pi-1')
    await w.revocations.refresh()
    const before = w.revocations.generation
    const lock = await w.locks.add({ node: 'pi-1', ttlMs: 60_000, message: 'firmware' })
    t.same(lock.target, { node: 'pi-1', hostId: pi.hostId })
    t.equal(lock.expires, w.clock.now + 60_000)
    t.ok(await w.revocations.refresh(), 'the view changed')
    t.not(w.revocations.generation, before, 'under a new generation')
    t.equal(w.revocations.refusedHost(pi.hostId), 'node "pi-1" is locked: firmware')
    t.ok(w.revocations.names(pi.hostId))
    w.clock.now += 60_000
    t.equal(w.revocations.refusedHost(pi.hostId), undefined, 'not once the lock has ended, before the backend drops it')
    t.notOk(await w.revocations.refresh(), 'reading again changes nothing while the item lives')
  })

  t.test(`${name}: a lock on a node that is not registered (any more) is refused and writes nothing`, async (t) => {
    const w = await world(t, open)
    const pi = await register(w.backend, 'pi-2')
    await w.nodes.remove('pi-2')
    t.match(await refusal(w.locks.add({ node: 'pi-2' })), { status: 404, message: /no node "pi-2" is registered/ })
    t.match(await refusal(w.locks.add({ node: pi.hostId })), { status: 404, message: /no node/ })
    t.match(await refusal(w.locks.add({ user: 'nobody' })), { status: 404, message: /no user "nobody"/ })
    t.same(await w.locks.list(), [])
  })

  t.test(`${name}: user locks, lock rm and expiry change the generation`, async (t) => {
    const w = await world(t, open)
    const lock = await w.locks.add({ user: 'alice' })
    await w.revocations.refresh()
    t.equal(w.revocations.list.refusedUser('alice'), 'user "alice" is locked')
    const locked = w.revocations.generation
    t.same((await w.locks.remove(lock.id)).id, lock.id)
    t.match(await refusal(w.locks.remove(lock.id)), { status: 404, message: /no lock/ }, 'a second rm finds nothing')
    await w.revocations.refresh()
    t.not(w.revocations.generation, locked, 'a removed lock is a new generation')
    t.equal(w.revocations.list.refusedUser('alice'), undefined)

    await w.locks.add({ user: 'alice', ttlMs: 1200 })
    await w.revocations.refresh()
    const short = w.revocations.generation
    await sleep(1500)
    t.ok(await w.revocations.refresh(), 'an expired lock changes the view')
    t.not(w.revocations.generation, short)
    t.same(w.revocations.snapshot.users, [])
    t.ok(w.changes >= 4, 'and each change was announced')
  })

  t.test(`${name}: a lock on the certificates issued before an instant refuses them by their back-dated start, not the user`, async (t) => {
    const w = await world(t, open)
    const issuedBefore = Math.ceil(w.clock.now / 1000) * 1000
    const lock = await w.locks.add({ user: 'alice', issuedBefore, ttlMs: 60_000, message: 'the user was reset' })
    t.equal(describeTarget(lock.target), `user:alice (certificates issued before ${new Date(issuedBefore).toISOString()})`, 'lock ls says which certificates')
    await w.revocations.refresh()
    const cut = issuedBefore - USER_CERT_BACKDATE_MS
    t.same(
      w.revocations.served().users,
      [{ name: 'alice', reason: lockReason(lock), until: lock.expires, remaining_ms: lock.expires! - w.clock.now, valid_from_before: cut }],
      'what proxies receive: the time left too, which they count down on their own clocks',
    )
    t.match(lockReason(lock), /^the certificates of user "alice" issued before \S+ are locked: the user was reset$/)
    t.equal(w.revocations.refusedUser({ name: 'alice', validFrom: cut - 1000 }), lockReason(lock), 'a certificate issued a second before the instant')
    t.equal(w.revocations.refusedUser({ name: 'alice', validFrom: cut }), undefined, 'one issued at the instant')
    t.equal(w.revocations.refusedUser('alice'), undefined, 'the user logs in and gets certificates')
  })

  t.test(`${name}: a removal record refuses the host and its key until its certificate would have expired plus the recovery window`, async (t) => {
    const w = await world(t, open)
    const certExpires = w.clock.now + 30 * DAY
    const pi = await register(w.backend, 'pi-3', { certExpires })
    await w.revocations.refresh()
    await w.nodes.remove('pi-3', (record) => [w.revocations.removalOperation(record, 1234)])
    await w.revocations.refresh()
    t.match(w.revocations.refusedHost(pi.hostId), `host ${pi.hostId} is not registered in this cluster: node "pi-3" was removed`)
    t.match(w.revocations.refusedKey(pi.tlsKeySha256!), 'was removed')
    t.equal(w.revocations.refusedKey('cd'.repeat(32)), undefined, 'another key is not refused')
    const [record] = w.revocations.removed
    t.match(record, { hostId: pi.hostId, nodename: 'pi-3', keepUntil: certExpires + 365 * DAY, lastSeen: 1234 })
    const item = await w.backend.get(`/removed/${pi.hostId}`)
    // The backend's TTL runs on the real clock, which is a little ahead of this injected one.
    t.ok(item?.expires !== undefined && item.expires >= certExpires + 365 * DAY, 'the backend drops it then, not before')
    t.equal(await w.backend.get(`/nodes/${pi.hostId}`), undefined, 'in the same transaction as the registration went')
    t.equal(await w.backend.get('/nodenames/pi-3'), undefined)
  })

  t.test(`${name}: the offline sweep forgets nodes silent for node_ttl unless a lock or removal names them`, async (t) => {
    const w = await world(t, open)
    const [old, locked, fresh] = [await register(w.backend, 'old'), await register(w.backend, 'locked'), await register(w.backend, 'fresh')]
    const presence = (record: NodeRecord, lastSeen: number): Presence => ({
      hostId: record.hostId,
      nodename: record.nodename,
      roles: ['node'],
      addr: '10.0.0.1',
      tunnel: true,
      labels: {},
      lastSeen,
    })
    for (const [record, lastSeen] of [
      [old, w.clock.now - 31 * DAY],
      [locked, w.clock.now - 40 * DAY],
      [fresh, w.clock.now - DAY],
    ] as const) {
      await w.backend.put(PRESENCE + record.hostId, JSON.stringify(presence(record, lastSeen)))
    }
    await w.locks.add({ node: 'locked' })
    await w.revocations.refresh()
    const sweep = new OfflineSweep({ backend: w.backend, nodeTtlMs: 30 * DAY, named: (hostId) => w.revocations.names(hostId), log, clock: () => w.clock.now })
    t.same(await sweep.sweep(), [old.hostId], 'only the unnamed node silent for longer than node_ttl')
    t.same(
      (await w.nodes.known()).map((p) => p.nodename),
      ['fresh', 'locked'],
    )
    t.ok(await w.backend.get(`/nodes/${old.hostId}`), 'its registration stays: it may come back')
    w.clock.now += 30 * DAY
    t.same(await sweep.sweep(), [fresh.hostId], 'a month later the other one too')
  })
}

onEveryBackend('revocations', suite)
