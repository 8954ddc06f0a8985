// The data dir's signs of a cluster, judged for the backend being opened: the data dir's own
// SQLite file is no sign of another cluster when the storage setting names that very file,
// however spelt.

import { mkdirSync, mkdtempSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import t, { type Test } from 'tap'
import { SqliteBackend } from './backend/sqlite.ts'
import { refuseForgottenCluster, sameFile } from './cluster-marker.ts'

const dir = () => mkdtempSync(join(tmpdir(), 'warren-marker-'))

/** A new cluster's first start: the backend at `path` opened (its file made), nothing in it yet. */
async function firstStart(t: Test, dataDir: string, path: string): Promise<void> {
  const backend = SqliteBackend.open(path)
  t.teardown(() => backend.close())
  await backend.put('/schema-written', '1')
  await refuseForgottenCluster(backend, dataDir, { type: 'sqlite', path })
}

t.test("the data dir's own SQLite file, named another way, is the backend opened: a new cluster starts", async (t) => {
  const plain = dir()
  await t.resolves(firstStart(t, plain, `${plain}//backend.db`), 'a doubled slash')
  const dotted = dir()
  await t.resolves(firstStart(t, dotted, `${dotted}/./backend.db`), 'a dot')

  const base = dir()
  const real = join(base, 'real')
  mkdirSync(real)
  symlinkSync(real, join(base, 'data'))
  await t.resolves(firstStart(t, join(base, 'data'), join(real, 'backend.db')), 'the data dir a symlink, the path through its target')
  const other = dir()
  mkdirSync(join(other, 'real'))
  symlinkSync(join(other, 'real'), join(other, 'data'))
  await t.resolves(firstStart(t, join(other, 'real'), join(other, 'data', 'backend.db')), 'the path through the symlink, the data dir its target')
})

t.test('another file while the data dir holds an SQLite backend: refused', async (t) => {
  const dataDir = dir()
  const old = SqliteBackend.open(join(dataDir, 'backend.db'))
  await old.put('/cluster/name', '"c"')
  old.close()
  await t.rejects(firstStart(t, dataDir, join(dir(), 'backend.db')), /holds no cluster, but data dir .* an SQLite backend/)
})

t.test('sameFile: one file however spelt, also before it exists', async (t) => {
  const base = dir()
  mkdirSync(join(base, 'real'))
  symlinkSync(join(base, 'real'), join(base, 'link'))
  const [a, b] = [join(base, 'real', 'f.db'), join(base, 'link', 'f.db')]
  t.ok(sameFile(a, b), 'not there yet: through the symlinked directory')
  t.ok(sameFile(a, `${base}/real//f.db`), 'not there yet: a doubled slash')
  t.ok(sameFile(a, relative(process.cwd(), a)), 'not there yet: relative')
  t.notOk(sameFile(a, join(base, 'real', 'g.db')))
  t.ok(sameFile(join(base, 'missing', 'x', 'f.db'), join(base, 'missing', 'x', '.', 'f.db')), 'not even its directory there')
  SqliteBackend.open(a).close()
  t.ok(sameFile(a, b), 'there: the same inode')
  t.notOk(sameFile(a, join(base, 'real', 'g.db')), 'one there, the other not')
})
