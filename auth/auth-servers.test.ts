// The live auth servers of one backend, each recording itself once for every watcher, on both
// backends (SQLite, and a real etcd when installed).

import t from 'tap'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { type AuthServerRecord, AuthServers, type AuthServerWatcher } from './auth-servers.ts'

/** A watcher that keeps what it was shown, and throws from `beforeRecord` when told to. */
function watcher(options: { throwBefore?: boolean } = {}) {
  const seen: AuthServerRecord[][] = []
  const failures: string[] = []
  const calls: string[] = []
  const watching: AuthServerWatcher = {
    beforeRecord: () => {
      calls.push('beforeRecord')
      if (options.throwBefore) throw new Error('the folder is gone')
    },
    seen: (peers) => {
      calls.push('seen')
      seen.push(peers)
    },
    failed: (error) => {
      calls.push('failed')
      failures.push(error.message)
    },
    afterRemove: () => calls.push('afterRemove'),
  }
  return { watching, seen, failures, calls }
}

onEveryBackend('auth-servers', (name, open) => {
  t.test(name, async (t) => {
    t.test("each server is shown the others' records, with what they keep, and not its own", async (t) => {
      const backend = await open()
      t.teardown(() => backend.close())
      const a = new AuthServers({ backend, address: () => '10.0.0.1:3025', recordingDir: '/srv/recordings', assignedLabelKeys: ['site', 'env', 'env'] })
      const b = new AuthServers({ backend, address: () => '10.0.0.2:3025', assignedLabelKeys: [] })
      const seenByA = watcher()
      a.watch(seenByA.watching)
      await a.start()
      await b.start()
      t.teardown(() => Promise.all([a.stop(), b.stop()]))
      t.same(seenByA.seen, [[]], 'alone at its first look')
      await a.look()
      t.match(seenByA.seen[1], [{ id: b.id, address: '10.0.0.2:3025', assigned_label_keys: [] }], "B's record at A's next look")
      t.notOk('recording_dir' in seenByA.seen[1][0], 'B records no sessions: no folder')
      const seenByB = watcher()
      b.watch(seenByB.watching)
      await b.look()
      t.match(seenByB.seen[0], [{ id: a.id, recording_dir: '/srv/recordings', assigned_label_keys: ['env', 'site'] }])
      t.equal(await a.isLive(b.id), true)
      await b.stop()
      t.equal(await a.isLive(b.id), false, 'a stopped server removes its record')
      t.same(seenByB.calls.slice(-1), ['afterRemove'], 'and tells its watchers after')
      await a.look()
      t.same(seenByA.seen.at(-1), [], 'A no longer sees it')
    })

    t.test('a server of a version that kept its keys elsewhere neither has nor lacks keys; an item that is no record is skipped', async (t) => {
      const backend = await open()
      t.teardown(() => backend.close())
      await backend.put('/auth-servers/0123456789abcdef', JSON.stringify({ id: '0123456789abcdef', address: '10.0.0.9:3025', hostname: 'old', recording_dir: '/srv/recordings' }))
      await backend.put('/auth-servers/not-a-server', 'not json')
      const a = new AuthServers({ backend, address: () => '', assignedLabelKeys: ['env'] })
      const seen = watcher()
      a.watch(seen.watching)
      await a.start()
      t.teardown(() => a.stop())
      t.same(seen.seen[0], [{ id: '0123456789abcdef', address: '10.0.0.9:3025', hostname: 'old', recording_dir: '/srv/recordings' }])
    })

    t.test("one watcher's failure leaves the others' looks alone; a backend that does not answer fails every one", async (t) => {
      const backend = await open()
      const a = new AuthServers({ backend, address: () => '', assignedLabelKeys: [] })
      const failing = watcher({ throwBefore: true })
      const working = watcher()
      a.watch(failing.watching)
      a.watch(working.watching)
      await a.start()
      t.same(failing.calls, ['beforeRecord', 'failed'], 'the failing one is told, and shown nothing')
      t.same(failing.failures, ['the folder is gone'])
      t.same(working.calls, ['beforeRecord', 'seen'], 'the other looks as ever')
      await backend.close()
      await a.look()
      t.same(working.calls.slice(-2), ['beforeRecord', 'failed'], 'no backend: the look fails for it too')
      await a.stop()
    })
  })
})
