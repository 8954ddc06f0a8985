// The backends every condition and transaction must hold the same on: SQLite, and a real etcd
// when it is installed (one server for the file, a key prefix of its own for each opening).

import { join } from 'node:path'
import t from 'tap'
import type { Backend } from '../../auth/backend/backend.ts'
import { EtcdBackend } from '../../auth/backend/etcd.ts'
import { SqliteBackend } from '../../auth/backend/sqlite.ts'
import { tempDir } from './cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './etcd.ts'

/** Runs `suite` once per backend, named after it; `open` gives a fresh, empty backend each time. */
export function onEveryBackend(prefix: string, suite: (name: string, open: () => Promise<Backend>) => void): void {
  suite('SQLite', async () => SqliteBackend.open(join(tempDir(), 'backend.db')))
  const unavailable = etcdUnavailable()
  if (unavailable) {
    t.test('etcd', { skip: unavailable }, async () => {})
    return
  }
  let etcd: EtcdServer | undefined
  t.teardown(() => etcd?.stop())
  suite('etcd', async () => {
    etcd ??= await EtcdServer.start()
    return EtcdBackend.open({ peers: [etcd.clientUrl], prefix: uniquePrefix(prefix) })
  })
}
