import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import t from 'tap'
import type { Backend } from './backend/backend.ts'
import { openBackend } from './backend/index.ts'
import { timedBackend } from './backend/timed.ts'
import { NodeDirectory, type Presence, registerNodeOperation, STORED_PRESENCE_MS } from './nodes.ts'

async function directory(t: Test, ttlMs: number) {
  const dir = mkdtempSync(join(tmpdir(), 'warren-nodes-'))
  const backend = await openBackend({ type: 'sqlite', path: join(dir, 'backend.db') })
  t.teardown(async () => {
    await backend.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await backend.txn([], [registerNodeOperation({ hostId: 'h1', nodename: 'one', roles: ['node'], joinedAt: Date.now() })])
  return { backend, nodes: new NodeDirectory(backend, ttlMs) }
}

const beat = (addr: string, labels: Record<string, string> = {}): Presence => ({ hostId: 'h1', nodename: 'one', roles: ['node'], addr, tunnel: true, labels, lastSeen: Date.now() })

t.test('repeated reports of an unchanged node write once; a change writes at once', async (t) => {
  const { backend, nodes } = await directory(t, 30_000)
  // Three proxies report the same node at the same moment, then again and again.
  await Promise.all([nodes.heartbeat(beat('10.0.0.1')), nodes.heartbeat(beat('10.0.0.1')), nodes.heartbeat(beat('10.0.0.1'))])
  for (let i = 0; i < 10; i++) await nodes.heartbeat(beat('10.0.0.1'))
  t.equal(nodes.presenceWrites, 1, 'one backend write')
  t.equal((await backend.list('/presence/')).length, 1)
  await nodes.heartbeat(beat('10.0.0.2'))
  t.equal(nodes.presenceWrites, 2, 'a new address is written')
  await nodes.heartbeat(beat('10.0.0.2', { site: 'b' }))
  t.equal(nodes.presenceWrites, 3, 'new labels are written')
  const [present] = await nodes.present('node')
  t.equal(present?.addr, '10.0.0.2')
  t.same(present?.labels, { site: 'b' })
})

t.test('presence shows while heartbeats are fresh, refreshes the stored item, and lapses after the TTL, staying known as offline', async (t) => {
  const { backend, nodes } = await directory(t, 1000)
  await nodes.heartbeat(beat('10.0.0.1'))
  const first = (await nodes.present())[0]!.lastSeen
  await sleep(300)
  await nodes.heartbeat(beat('10.0.0.1'))
  t.equal(nodes.presenceWrites, 1, 'no write before half the TTL')
  t.ok((await nodes.present())[0]!.lastSeen > first, 'the last heartbeat time comes from memory')
  await sleep(300)
  await nodes.heartbeat(beat('10.0.0.1'))
  t.equal(nodes.presenceWrites, 2, 'refreshed after half the TTL')
  await sleep(1100)
  t.same(await nodes.present(), [], 'gone once no heartbeat came for the TTL')
  await sleep(500)
  const other = new NodeDirectory(backend, 1000)
  t.same(await other.present(), [], 'also for another auth server, once the stored item is older than TTL + TTL/2')
  t.same(
    (await other.known()).map((p) => p.hostId),
    ['h1'],
    'the stored item stays: the node is known, offline',
  )
})

t.test('a presence is written only while its host is registered', async (t) => {
  const { backend, nodes } = await directory(t, 30_000)
  t.equal(await nodes.heartbeat({ ...beat('10.0.0.1'), hostId: 'never-joined' }), false, 'an unknown host is refused')
  t.ok(await nodes.heartbeat(beat('10.0.0.1')), 'a registered one is recorded')
  // Removed on another auth server sharing the backend: this one still has the record cached.
  await new NodeDirectory(backend, 30_000).remove('one')
  t.equal(await nodes.heartbeat(beat('10.0.0.2')), false, 'a report that arrives after the removal writes nothing')
  t.same(await backend.list('/presence/'), [], 'no presence is left behind')
})

t.test('the proxies that hold a tunnel node are kept per proxy, also across auth servers', async (t) => {
  const { backend, nodes } = await directory(t, 30_000)
  await nodes.heartbeat(beat('10.0.0.1'), 'proxy-a')
  const other = new NodeDirectory(backend, 30_000)
  await other.heartbeat(beat('10.0.0.1'), 'proxy-b')
  t.same(Object.keys((await other.known())[0].via ?? {}).sort(), ['proxy-a', 'proxy-b'], "the second server merged the first one's report")
  await nodes.heartbeat(beat('10.0.0.1'), 'proxy-a')
  t.same(Object.keys((await nodes.known())[0].via ?? {}).sort(), ['proxy-a', 'proxy-b'], 'and the first sees both')
})

t.test('another auth server reads the stored presence', async (t) => {
  const { backend, nodes } = await directory(t, 30_000)
  await nodes.heartbeat(beat('10.0.0.9'))
  const other = new NodeDirectory(backend, 30_000)
  const [present] = await other.present('node')
  t.equal(present?.addr, '10.0.0.9')
})

t.test("a proxy's report of a node that heartbeats directly changes nothing, here or at another auth server; once it stops, the reports count", async (t) => {
  const { backend, nodes } = await directory(t, 1000)
  const direct: Presence = { ...beat('10.0.0.5:3022', { site: 'a' }), tunnel: false }
  await nodes.heartbeat(direct)
  t.ok(await nodes.heartbeat(beat('', { site: 'forged' }), 'proxy-x'), 'the report is answered as for a registered host')
  const other = new NodeDirectory(backend, 1000)
  t.ok(await other.heartbeat(beat('', { site: 'forged' }), 'proxy-x'))
  for (const [which, directory] of [
    ['here', nodes],
    ['at another auth server', other],
  ] as const) {
    const [present] = await directory.present()
    t.match(present, { addr: '10.0.0.5:3022', tunnel: false, labels: { site: 'a' } }, `${which}: as the node said`)
  }
  t.equal(nodes.presenceWrites + other.presenceWrites, 1, 'only the heartbeat was written')
  await sleep(1600)
  t.ok(await other.heartbeat(beat('10.9.9.9', { site: 'moved' }), 'proxy-y'))
  t.match((await other.present())[0], { addr: '10.9.9.9', tunnel: true }, 'a node gone from direct to a tunnel is reported by its proxies after the TTL')
})

/** `backend` counting its list operations by prefix. */
function countingLists(backend: Backend): { backend: Backend; lists: Map<string, number> } {
  const lists = new Map<string, number>()
  const counted = { ...timedBackend(backend, () => {}) }
  counted.list = (prefix) => {
    lists.set(prefix, (lists.get(prefix) ?? 0) + 1)
    return backend.list(prefix)
  }
  return { backend: counted, lists }
}

t.test('the registry is listed once per change, here or at another auth server, however often it is asked for', async (t) => {
  const { backend } = await directory(t, 30_000)
  const { backend: counted, lists } = countingLists(backend)
  const nodes = new NodeDirectory(counted, 30_000)
  const other = new NodeDirectory(backend, 30_000)
  const names = async () => (await nodes.registered()).map((record) => record.nodename).sort()

  const calls = await Promise.all(Array.from({ length: 20 }, () => nodes.registered()))
  for (let i = 0; i < 20; i++) await nodes.registered()
  t.equal(lists.get('/nodes/'), 1, 'one list for 40 calls, 20 of them at once')
  t.ok(
    calls.every((records) => records === calls[0]),
    'the same list to every call',
  )

  // Another auth server registers a host (a join's transaction), renews one, removes one.
  const plan = await other.planRegistration({ hostId: 'h2', nodename: 'two', roles: ['node'], joinedAt: Date.now(), sshPublicKey: 'ssh-ed25519 AAAA' }, { replaceHolder: false })
  t.ok(await backend.txn(plan.conditions, plan.operations))
  t.same(await names(), ['one', 'two'], 'a host registered elsewhere is in the next call')
  t.ok(await other.recordCertificate('h2', 12345))
  t.equal((await nodes.registered()).find((record) => record.hostId === 'h2')?.certExpires, 12345, 'a renewal elsewhere is in the next call')
  await other.remove('one')
  t.same(await names(), ['two'], 'a host removed elsewhere is gone from the next call')
  await nodes.remove('two')
  t.same(await names(), [], 'as one removed here')
  t.equal(lists.get('/nodes/'), 5, 'one list per change')
})

t.test('listings reuse the stored presence briefly, and read it again once a host is removed here', async (t) => {
  const { backend } = await directory(t, 30_000)
  const { backend: counted, lists } = countingLists(backend)
  const nodes = new NodeDirectory(counted, 30_000)
  await new NodeDirectory(backend, 30_000).heartbeat(beat('10.0.0.1'))
  for (let i = 0; i < 10; i++) {
    await nodes.present('node')
    await nodes.known('node')
  }
  t.equal(lists.get('/presence/'), 1, 'one list for 20 calls')
  t.equal((await nodes.known()).length, 1, 'the node stored by another auth server')
  await nodes.remove('one')
  t.same(await nodes.known(), [], 'its presence is gone from the next call after its removal here')
  await sleep(STORED_PRESENCE_MS)
  await nodes.known()
  t.equal(lists.get('/presence/'), 3, 'read again after STORED_PRESENCE_MS')
})
