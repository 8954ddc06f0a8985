// A storage setting changed under a running cluster (SQLite to etcd, another SQLite path)
// points the auth server at a backend that holds no cluster. It refuses to create one there,
// which would be a new cluster under the same name with a new CA pin, cutting off every
// device that pins the old one: `warren start` exits 1 and writes nothing into that backend.
// The data dir shows the cluster by the record the auth server keeps there, by warrenctl's
// admin identity (a data dir from before that record), or by its SQLite backend when the
// setting now names another; moved out of the way, they let a new cluster start on purpose.
// Real processes, a real etcd where one is installed.

import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Etcd3 } from 'etcd3'
import t, { type Test } from 'tap'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import { MARKER_FILE } from '../auth/cluster-marker.ts'
import { AuthProcess, Daemon, tempDir } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'

/** How `warren start` ended, or 'still running' if it has not within a generous bound. */
function ending(daemon: Daemon): Promise<number | null | 'still running'> {
  return Promise.race([daemon.exited, sleep(30_000, 'still running' as const, { ref: false })])
}

/** An auth server's data dir, its first run on SQLite done: the cluster's pin. */
async function sqliteCluster(): Promise<{ auth: AuthProcess; pin: string }> {
  const auth = await new AuthProcess().start()
  const pin = await auth.pin()
  await auth.stop()
  return { auth, pin }
}

function setStorage(auth: AuthProcess, storage: string): void {
  writeFileSync(
    auth.configPath,
    ['version: v1', `data_dir: ${auth.dataDir}`, 'auth_service:', '  listen_addr: 127.0.0.1:0', '  cluster_name: test-cluster', `  storage: ${storage}`].join('\n'),
  )
}

async function refused(t: Test, auth: AuthProcess, what: string): Promise<void> {
  const daemon = new Daemon(['start', '--roles=auth', `--config=${auth.configPath}`])
  t.teardown(() => daemon.stop('SIGKILL'))
  t.equal(await ending(daemon), 1, what)
}

t.test('another SQLite path: the start is refused, and the new file holds nothing', async (t) => {
  const { auth } = await sqliteCluster()
  const elsewhere = join(tempDir(), 'other.db')
  setStorage(auth, `{ type: sqlite, path: ${elsewhere} }`)
  await refused(t, auth, 'warren start exits with status 1')
  const backend = SqliteBackend.open(elsewhere)
  t.teardown(() => backend.close())
  t.same(await backend.list('/'), [], 'no cluster name, no CA: nothing was written there')
})

t.test('SQLite to etcd: refused for each sign of the cluster in the data dir, a new cluster once they are moved away', { skip: etcdUnavailable() }, async (t) => {
  const etcd = await EtcdServer.start()
  t.teardown(() => etcd.stop())
  const client = new Etcd3({ hosts: etcd.clientUrl })
  t.teardown(() => client.close())
  const prefix = uniquePrefix('switch')
  const { auth, pin } = await sqliteCluster()
  setStorage(auth, `{ type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${prefix}" }`)
  const etcdKeys = async () => Object.keys(await client.getAll().prefix(prefix).strings())

  await refused(t, auth, 'with the record of the cluster: exits with status 1')
  t.same(await etcdKeys(), [], 'nothing written into etcd')
  renameSync(join(auth.dataDir, MARKER_FILE), join(auth.dataDir, `${MARKER_FILE}.old`))
  await refused(t, auth, 'with the admin identity (a data dir from before the record): exits with status 1')
  renameSync(auth.identityPath, `${auth.identityPath}.old`)
  await refused(t, auth, 'with the SQLite backend left in the data dir: exits with status 1')
  t.same(await etcdKeys(), [], 'still nothing written into etcd')

  renameSync(join(auth.dataDir, 'backend.db'), join(auth.dataDir, 'backend.db.old'))
  const fresh = await new AuthProcess({ dataDir: auth.dataDir, authServiceYaml: `  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${prefix}" }` }).start()
  t.teardown(() => fresh.stop())
  const newPin = await fresh.pin()
  t.not(newPin, pin, 'all moved away: a new cluster, on purpose')
  t.ok((await etcdKeys()).length > 0, 'in etcd')
})
