// Auth servers sharing a backend keep the keys any live one of them lists for assignments, on
// both backends (SQLite, and a real etcd when installed).

import type { Test } from 'tap'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { ClusterAssignedKeys } from './assigned-label-keys.ts'
import type { Backend } from './backend/backend.ts'

const log = createLogger('test', { level: 'error' })

onEveryBackend('assigned-label-keys', (name, open) => {
  t.test(name, async (t) => {
    const server = (t: Test, backend: Backend, own: string[]) => {
      const changes: string[][] = []
      const keys = new ClusterAssignedKeys({ backend, own, address: () => '127.0.0.1:3025', onChange: (next) => changes.push([...next]), log })
      t.teardown(() => keys.stop())
      return { keys, changes }
    }

    t.test('the union of the live lists, each server naming those that differ from its own', async (t) => {
      const backend = await open()
      t.teardown(() => backend.close())
      const a = server(t, backend, ['site', 'env', 'env'])
      await a.keys.start()
      t.same(a.keys.status().effective, ['env', 'site'], 'alone: its own list, sorted, once each')
      t.same(a.changes, [], 'nothing to change')
      const b = server(t, backend, ['owner'])
      await b.keys.start()
      t.same(b.changes, [['env', 'owner', 'site']], "B takes A's keys at its start")
      t.same(
        b.keys.status().differing.map((peer) => [peer.auth_server_id, peer.keys]),
        [[a.keys.id, ['env', 'site']]],
      )
      await a.keys.check()
      t.same(a.keys.status().effective, ['env', 'owner', 'site'], "A takes B's at its next look")
      const same = server(t, backend, ['env', 'site'])
      await same.keys.start()
      await a.keys.check()
      t.same(
        a.keys.status().differing.map((peer) => peer.auth_server_id),
        [b.keys.id],
        'a server with the same list is not named',
      )

      await b.keys.stop()
      await same.keys.check()
      t.same(same.keys.status().effective, ['env', 'site'], "a stopped server's keys go at the others' next look")
      await a.keys.check()
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
      await b.keys.start()
      await a.keys.start()
      t.same(a.keys.status().effective, ['env'])
      await b.keys.stop()
      await backend.close()
      await a.keys.check()
      t.same(a.keys.status().effective, ['env'], 'no look, no change')
      t.same(a.changes, [['env']])
    })
  })
})
