// The embedded backend's copy and its return: whole while the backend is open and written,
// refused when it would mix clusters or is no backend of ours, and the backend it replaces
// kept beside it with what its write-ahead log still held.

import { chownSync, existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { authorityKey } from '../authorities.ts'
import { SqliteBackend } from './sqlite.ts'
import { backUpSqlite, readBackup, restoreSqlite } from './sqlite-backup.ts'

const dir = () => mkdtempSync(join(tmpdir(), 'warren-backup-'))

/** A backend of `cluster` with both CA records and `extra` items, left open (its log unmerged). */
async function backendOf(path: string, cluster: string, extra = 0): Promise<SqliteBackend> {
  const backend = SqliteBackend.open(path)
  await backend.put('/cluster/name', JSON.stringify(cluster))
  for (const type of ['host', 'user'] as const) await backend.put(authorityKey(type), JSON.stringify({ type }))
  for (let i = 0; i < extra; i++) await backend.put(`/nodes/${i}`, 'x')
  return backend
}

t.test('a copy of an open backend holds everything written before it', async (t) => {
  const source = join(dir(), 'backend.db')
  const backend = await backendOf(source, 'c1', 10)
  t.teardown(() => backend.close())
  const target = join(dir(), 'copy.db')
  const items = readBackup(source).items
  t.same(backUpSqlite(source, target), { clusterName: 'c1', items })
  await backend.put('/nodes/after', 'x')
  t.same(readBackup(source).items, items + 1)
  t.same(readBackup(target), { clusterName: 'c1', items }, 'and nothing written after')
  t.throws(() => backUpSqlite(source, target), { message: /exists/ }, 'an existing file is refused')
  t.throws(() => backUpSqlite(join(dir(), 'absent.db'), join(dir(), 'x.db')), { message: /there is no backend at/ })
})

t.test('what is no backend of ours is refused by name, and changes nothing', async (t) => {
  const here = dir()
  const notSqlite = join(here, 'notes.txt')
  writeFileSync(notSqlite, 'hello\n')
  t.throws(() => readBackup(notSqlite), { message: /is not a backup of a Warren backend: file is not a database/ })
  const noCA = join(here, 'no-ca.db')
  const partial = SqliteBackend.open(noCA)
  await partial.put('/cluster/name', '"c1"')
  await partial.close()
  t.throws(() => readBackup(noCA), { message: /holds no host CA/ })

  const target = join(dir(), 'backend.db')
  const current = await backendOf(target, 'c1', 3)
  await current.close()
  const items = readBackup(target).items
  t.throws(() => restoreSqlite(notSqlite, target), { message: /is not a backup of a Warren backend/ })
  t.same(readBackup(target), { clusterName: 'c1', items }, 'the backend there is untouched')
})

t.test("another cluster's backup is refused; the backend it would replace stays", async (t) => {
  const target = join(dir(), 'backend.db')
  const current = await backendOf(target, 'ours', 1)
  await current.close()
  const theirs = join(dir(), 'theirs.db')
  await (await backendOf(theirs, 'theirs')).close()
  t.throws(() => restoreSqlite(theirs, target), { message: /cluster "theirs".*cluster "ours": nothing was changed/ })
  t.same(readBackup(target).clusterName, 'ours')
  t.same(
    readdirSync(join(target, '..')).filter((name) => name.includes('restor')),
    [],
    'no file left beside it',
  )
})

t.test('the backend a restore replaces is kept with its write-ahead log, whole', async (t) => {
  const copy = join(dir(), 'copy.db')
  const original = join(dir(), 'original.db')
  await (await backendOf(original, 'c1', 2)).close()
  const copied = backUpSqlite(original, copy).items

  const target = join(dir(), 'backend.db')
  // Written and left open: the last items are in its log, not yet in the file.
  const current = await backendOf(target, 'c1', 7)
  const held = readBackup(target).items
  t.equal(held, copied + 5)
  const restored = restoreSqlite(copy, target, new Date(0))
  t.same({ clusterName: restored.clusterName, items: restored.items }, { clusterName: 'c1', items: copied })
  t.same(readBackup(target).items, copied, 'the backup is the backend now')
  t.ok(restored.keptAs?.endsWith('.before-restore-1970-01-01T000000.000Z'))
  await current.close()
  t.same(readBackup(restored.keptAs!).items, held, 'the one it replaced, every item of it')
})

t.test(
  "the log files a copy makes beside a stopped backend are its owner's, not the copier's",
  { skip: process.getuid?.() !== 0 && 'needs root, to own a file as another user' },
  async (t) => {
    const source = join(dir(), 'backend.db')
    await (await backendOf(source, 'c1')).close()
    // The auth server's own user (nobody here); the copy is made as root, with the server stopped.
    const nobody = 65534
    chownSync(source, nobody, nobody)
    t.notOk(existsSync(`${source}-shm`), 'a stopped backend has no log files')
    backUpSqlite(source, join(dir(), 'copy.db'))
    for (const suffix of ['-wal', '-shm']) {
      if (existsSync(source + suffix)) t.equal(statSync(source + suffix).uid, nobody, `${suffix}: the backend's owner's`)
    }
  },
)
