// The labels the cluster assigns, on both backends (SQLite, and a real etcd when installed):
// written with a join or a change, read again by every auth server only when their
// generation changed, signed for their host, and gone with it.

import { randomUUID } from 'node:crypto'
import type { Test } from 'tap'
import t from 'tap'
import { checkAssignedLabels } from '../shared/assigned-labels.ts'
import { createLogger } from '../shared/log.ts'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { AssignedLabels } from './assigned-labels.ts'
import { Authority, newKeySet } from './authorities.ts'
import type { Backend } from './backend/backend.ts'

const log = createLogger('test', { level: 'error' })
const CLUSTER = 'c1'
const hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })

function suite(name: string, open: () => Promise<Backend>): void {
  t.test(name, async (t) => {
    const world = async (t: Test) => {
      const backend = await open()
      t.teardown(() => backend.close())
      const clock = { now: 1_000_000 }
      const make = (assignedOnlyKeys?: string[]) => new AssignedLabels({ backend, clusterName: CLUSTER, hostCA: () => hostCA, log, clock: () => clock.now, assignedOnlyKeys })
      return { backend, clock, make, here: make(), there: make() }
    }

    t.test('a join writes them; every auth server reads them; they are signed for their host', async (t) => {
      const { backend, here, there } = await world(t)
      const hostId = randomUUID()
      t.same(here.joinOperations(hostId, {}), [], 'a token without labels writes nothing')
      t.ok(await backend.txn([], here.joinOperations(hostId, { env: 'lab' })))
      await here.refresh()
      await there.refresh()
      t.same(there.forHost(hostId), { env: 'lab' })
      t.not(there.generation, '')
      t.same(there.apply(hostId, { labels: { env: 'prod', site: 'hq' } }).labels, { env: 'lab', site: 'hq' }, 'assigned keys win; the rest stay the node’s')
      t.same(there.apply(randomUUID(), { labels: { env: 'prod' } }).labels, { env: 'prod' }, 'a host with none keeps its own')
      const statement = there.statement(hostId)!
      t.equal(checkAssignedLabels(statement, { clusterName: CLUSTER, hostId, trustedPems: hostCA.tlsCertPems }, undefined), true)
      t.throws(() => checkAssignedLabels(statement, { clusterName: CLUSTER, hostId: randomUUID(), trustedPems: hostCA.tlsCertPems }, undefined), { name: 'AssignedLabelsRefused' })
      t.throws(() => checkAssignedLabels({ ...statement, labels: { env: 'prod' } }, { clusterName: CLUSTER, hostId, trustedPems: hostCA.tlsCertPems }, undefined), {
        name: 'AssignedLabelsRefused',
      })
      t.equal(there.statements().length, 1)
    })

    t.test('a change is conditional on the record as read, newer than the last, and read again only after a generation change', async (t) => {
      const { backend, clock, here, there } = await world(t)
      const hostId = randomUUID()
      await backend.txn([], here.joinOperations(hostId, { env: 'lab' }))
      await there.refresh()
      const first = there.statement(hostId)!
      const change = await here.plan(hostId, (current) => ({ ...current, site: 'hq' }))
      const racing = await here.plan(hostId, () => ({}))
      t.ok(await backend.txn(change.conditions, change.operations))
      t.notOk(await backend.txn(racing.conditions, racing.operations), 'a change planned on the old record loses')
      t.ok(change.record.changed > first.changed, 'changed grows even within one millisecond')
      await there.refresh()
      t.same(there.forHost(hostId), { env: 'lab', site: 'hq' })
      const second = there.statement(hostId)!
      t.equal(checkAssignedLabels(second, { clusterName: CLUSTER, hostId, trustedPems: hostCA.tlsCertPems }, first), true, 'the newer set replaces the held one')
      t.equal(checkAssignedLabels(first, { clusterName: CLUSTER, hostId, trustedPems: hostCA.tlsCertPems }, second), false, 'the older one does not come back')

      // Without a generation change nothing is read again: a record written behind the
      // store's back is not seen, so every write must change the generation.
      await backend.put(`/assigned-labels/${hostId}`, JSON.stringify({ hostId, labels: { env: 'sneaky' }, changed: clock.now + 10 }))
      await there.refresh()
      t.same(there.forHost(hostId), { env: 'lab', site: 'hq' })

      const emptied = await here.plan(hostId, () => ({}))
      t.ok(await backend.txn(emptied.conditions, emptied.operations))
      await there.refresh()
      t.same(there.forHost(hostId), {}, 'all removed: an empty set, which a node takes in place of its own')
      t.same(there.statement(hostId)?.labels, {})
    })

    t.test('of the keys only assigned, a node carries what was assigned and none of its own; proxies see the keys in the generation', async (t) => {
      const { backend, make, here } = await world(t)
      const strict = make(['env'])
      await strict.refresh()
      t.not(strict.generation, '', 'a generation although nothing was ever assigned: proxies fetch the keys')
      t.not(strict.generation, make(['env', 'site']).generation, 'other keys, another generation')
      const hostId = randomUUID()
      t.same(strict.apply(hostId, { labels: { env: 'prod', room: 'a' } }).labels, { room: 'a' }, 'nothing assigned: its own env is dropped')
      t.same(here.apply(hostId, { labels: { env: 'prod' } }).labels, { env: 'prod' }, 'no keys only assigned: its own counts')
      await backend.txn([], strict.joinOperations(hostId, { env: 'lab' }))
      const before = strict.generation
      await strict.refresh()
      t.not(strict.generation, before, 'an assignment changes it as before')
      t.same(strict.apply(hostId, { labels: { env: 'prod', room: 'a' } }).labels, { env: 'lab', room: 'a' }, 'assigned: the assigned value')
    })

    t.test('they go with their host', async (t) => {
      const { backend, here, there } = await world(t)
      const hostId = randomUUID()
      await backend.txn([], here.joinOperations(hostId, { env: 'lab' }))
      await there.refresh()
      t.ok(await backend.txn([], here.removeOperations(hostId)))
      await there.refresh()
      t.equal(there.forHost(hostId), undefined)
      t.equal(there.statement(hostId), undefined)
    })
  })
}

onEveryBackend('assigned-labels', suite)
