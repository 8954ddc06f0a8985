// Auth servers sharing a backend keep the keys any live one of them lists for assignments, on
// both backends (SQLite, and a real etcd when installed).

import type { Test } from 'tap'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { ClusterAssignedKeys } from './assigned-label-keys.ts'
import { AuthServers } from './auth-servers.ts'
import type { Backend } from './backend/backend.ts'

const log = createLogger('test', { level: 'error' })

onEveryBackend('assigned-label-keys', (name, open) => {
  t.test(name, async (t) => {
    const server = (t: Test, backend: Backend, own: string[]) => {
      const changes: string[][] = []
      const servers = new AuthServers({ backend, address: () => '127.0.0.1:3025', assignedLabelKeys: own })
      const keys = new ClusterAssignedKeys({ own, onChange: (next) => changes.push([...next]), log })
      servers.watch(keys)
      t.teardown(() => servers.stop())
      return { servers, keys, changes }
    }

    t.test('the union of the live lists, each server naming those that differ from its own', async (t) => {
      const backend = await open()
      t.teardown(() => backend.close())
      const a = server(t, backend, ['site', 'env', 'env'])
      await a.servers.start()
      t.same(a.keys.status().effective, ['env', 'site'], 'alone: its own list, sorted, once each')
      t.same(a.changes, [], 'nothing to change')
      const b = server(t, backend, ['owner'])
      await b.servers.start()
      t.same(b.changes, [['env', 'owner', 'site']], "B takes A's keys at its start")
      t.same(
        b.keys.status().differing.map((peer) => [peer.auth_server_id, peer.keys]),
        [[a.servers.id, ['env', 'site']]],
      )
      await a.servers.look()
      t.same(a.keys.status().effective, ['env', 'owner', 'site'], "A takes B's at its next look")
      const same = server(t, backend, ['env', 'site'])
      await same.servers.start()
      await a.servers.look()
      t.same(
        a.keys.status().differing.map((peer) => peer.auth_server_id),
        [b.servers.id],
        'a server with the same list is not named',
      )

      await b.servers.stop()
      await same.servers.look()
      t.same(same.keys.status().effective, ['env', 'site'], "a stopped server's keys go at the others' next look")
      await a.servers.look()
      t.same(a.keys.status(), { ...a.keys.status(), own: ['env', 'site'], effective: ['env', 'site'], differing: [] }, 'every live list is the same again')
      t.same(
        a.changes,
        [
          ['env', 'owner', 'site'],
          ['env', 'site'],
        ],
        'A was told of each change',
      )
    })

    t.test('a backend that does not answer leaves the union as it was', async (t) => {
      const backend = await open()
      const a = server(t, backend, [])
      const b = server(t, backend, ['env'])
      await b.servers.start()
      await a.servers.start()
      t.same(a.keys.status().effective, ['env'])
      await b.servers.stop()
      await backend.close()
      await a.servers.look()
      t.same(a.keys.status().effective, ['env'], 'no look, no change')
      t.same(a.changes, [['env']])
    })
  })
})

t.test('a server of a version that records no keys adds none and differs from none', async (t) => {
  const changes: string[][] = []
  const keys = new ClusterAssignedKeys({ own: ['env'], onChange: (next) => changes.push([...next]), log })
  keys.seen([{ id: '0123456789abcdef', address: '10.0.0.9:3025', hostname: 'old' }])
  t.same(keys.status().effective, ['env'])
  t.same(keys.status().differing, [])
  t.same(changes, [])
  keys.seen([{ id: '0123456789abcdef', address: '10.0.0.9:3025', hostname: 'old', assigned_label_keys: [] }])
  t.same(
    keys.status().differing.map((peer) => peer.keys),
    [[]],
    'one that records an empty list differs',
  )
})
