import t from 'tap'
import type { Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { openBackend } from './backend/index.ts'
import { NodeDirectory, registerNodeOperation, type Presence } from './nodes.ts'

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

t.test('presence shows while heartbeats are fresh, refreshes the stored item, and lapses after the TTL', async (t) => {
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
  t.equal((await backend.list('/presence/')).length, 1, 'even while the stored item lives on a little')
  await sleep(500)
  t.equal((await backend.list('/presence/')).length, 0, 'and the stored item expires too')
})

t.test('another auth server reads the stored presence', async (t) => {
  const { backend, nodes } = await directory(t, 30_000)
  await nodes.heartbeat(beat('10.0.0.9'))
  const other = new NodeDirectory(backend, 30_000)
  const [present] = await other.present('node')
  t.equal(present?.addr, '10.0.0.9')
})
