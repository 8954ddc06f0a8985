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

/**
 * `real`, with its transactions passed through `txn` (which calls `real.txn` itself): for a
 * test that holds a write back, or makes one fail after it committed.
 */
export function withTxn(real: Backend, txn: Backend['txn']): Backend {
  return {
    get: (key) => real.get(key),
    list: (prefix) => real.list(prefix),
    put: (key, value, options) => real.put(key, value, options),
    create: (key, value, options) => real.create(key, value, options),
    delete: (key) => real.delete(key),
    close: () => real.close(),
    txn,
  }
}
