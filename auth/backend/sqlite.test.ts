import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import t from 'tap'
import { backendConformance } from '../../test/helpers/backend-conformance.ts'
import { openBackend } from './index.ts'
import { prefixUpperBound, SqliteBackend, type SqliteBackendOptions } from './sqlite.ts'

const here = dirname(fileURLToPath(import.meta.url))
const crashWriter = join(here, '../../test/fixtures/sqlite-crash-writer.ts')

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-sqlite-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function openIn(t: Test, path: string, options?: SqliteBackendOptions): SqliteBackend {
  const backend = SqliteBackend.open(path, options)
  t.teardown(() => backend.close())
  return backend
}

backendConformance(t, 'SqliteBackend', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-sqlite-'))
  const path = join(dir, 'nested', 'warren.db')
  return {
    backend: SqliteBackend.open(path),
    reopen: async () => SqliteBackend.open(path),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  }
})

t.test('every acknowledged write survives SIGKILL', async (t) => {
  const path = join(await tempDir(t), 'crash.db')
  const acknowledged = await writeUntilKilled(path, 300)
  t.ok(acknowledged.size >= 300, `${acknowledged.size} writes acknowledged before the kill`)

  const backend = openIn(t, path)
  const lost: string[] = []
  for (const [key, value] of acknowledged) {
    if ((await backend.get(key))?.value !== value) lost.push(key)
  }
  t.same(lost, [], 'no acknowledged write was lost')
})

// Runs the writer in a child process and SIGKILLs it once `count` writes were acknowledged.
// Returns every acknowledged key and value, including any that arrived after the kill.
function writeUntilKilled(path: string, count: number): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [crashWriter, path], { stdio: ['ignore', 'pipe', 'pipe'] })
    const acknowledged = new Map<string, string>()
    let stderr = ''
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000)
    createInterface({ input: child.stdout }).on('line', (line) => {
      const [key, value] = line.split(' ')
      acknowledged.set(key as string, value as string)
      if (acknowledged.size === count) child.kill('SIGKILL')
    })
    child.on('error', reject)
    // 'close' rather than 'exit': it waits until stdout has been read to the end.
    child.on('close', (code, signal) => {
      clearTimeout(guard)
      if (signal === 'SIGKILL' && acknowledged.size >= count) resolve(acknowledged)
      else reject(new Error(`writer stopped after ${acknowledged.size} writes (code ${code}, signal ${signal}): ${stderr}`))
    })
  })
}

t.test('the database and its directory are private', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'state', 'auth', 'warren.db')
  const backend = openIn(t, path)
  await backend.put('/a', 'secret')
  t.equal((await stat(path)).mode & 0o777, 0o600, 'database file')
  t.equal((await stat(`${path}-wal`)).mode & 0o777, 0o600, 'write-ahead log')
  t.equal((await stat(dirname(path))).mode & 0o777, 0o700, 'created directory')
})

t.test('an existing database file is made private', async (t) => {
  const path = join(await tempDir(t), 'warren.db')
  await writeFile(path, '', { mode: 0o644 })
  openIn(t, path)
  t.equal((await stat(path)).mode & 0o777, 0o600)
})

t.test('a link in place of the database is not followed', async (t) => {
  const dir = await tempDir(t)
  const target = join(dir, 'elsewhere.conf')
  await writeFile(target, 'kept as it is', { mode: 0o644 })
  const path = join(dir, 'warren.db')
  await symlink(target, path)
  t.throws(() => SqliteBackend.open(path), { message: /^cannot open SQLite backend at / })
  t.equal(await readFile(target, 'utf8'), 'kept as it is', 'its target is untouched')
  t.equal((await stat(target)).mode & 0o777, 0o644, 'and keeps its mode')
  t.ok((await lstat(path)).isSymbolicLink(), 'the link stays a link')
})

t.test("a database file of another user's is refused", { skip: process.getuid?.() !== 0 && 'needs root to give a file away' }, async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'warren.db')
  // Made ready, readable by everyone, by another account before the auth server's first start.
  await writeFile(path, '', { mode: 0o666 })
  await chown(path, 65534, 65534)
  t.throws(() => SqliteBackend.open(path), { message: /^cannot open SQLite backend at / })
  const stats = await stat(path)
  t.equal(stats.size, 0, 'nothing is written into it')
  t.equal(stats.uid, 65534, 'it stays the other user’s')
  t.notOk(existsSync(`${path}-wal`), 'no journal is made beside it')
})

t.test('opening in a place that cannot hold a database fails clearly', async (t) => {
  const dir = await tempDir(t)
  const notADirectory = join(dir, 'file')
  await writeFile(notADirectory, '')
  const path = join(notADirectory, 'warren.db')
  t.throws(() => SqliteBackend.open(path), {
    message: new RegExp(`^cannot open SQLite backend at ${escapeRegExp(path)}: .*not a directory`),
  })

  const dangling = join(dir, 'dangling')
  await symlink(join(dir, 'nowhere'), dangling)
  t.throws(() => SqliteBackend.open(join(dangling, 'sub', 'warren.db')), {
    message: /^cannot open SQLite backend at .*: .*dangling exists but is not a directory/,
  })

  t.test('a directory under /proc', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
    t.throws(() => SqliteBackend.open('/proc/warren/state/warren.db'), {
      message: /^cannot open SQLite backend at \/proc\/warren\/state\/warren\.db: ENOENT/,
    })
  })

  t.test('a read-only directory', { skip: process.getuid?.() === 0 && 'root ignores permissions' }, async (t) => {
    const readOnly = join(dir, 'read-only')
    await mkdir(readOnly, { mode: 0o500 })
    t.teardown(() => chmod(readOnly, 0o700))
    t.throws(() => SqliteBackend.open(join(readOnly, 'warren.db')), {
      message: /^cannot open SQLite backend at .*permission denied/,
    })
  })
})

t.test('expiry follows the injected clock', async (t) => {
  let now = 1_000_000
  const backend = openIn(t, join(await tempDir(t), 'warren.db'), { clock: () => now })
  await backend.put('/a', 'v', { ttlMs: 100 })
  await backend.put('/b', 'v', { ttlMs: 100 })
  await backend.put('/c', 'v')
  t.match(await backend.get('/a'), { expires: 1_000_100 })

  now += 99
  t.equal((await backend.list('/')).length, 3, 'alive until the expiry instant')
  now += 1
  t.same(
    (await backend.list('/')).map((item) => item.key),
    ['/c'],
    'gone at the expiry instant',
  )
  t.equal(await backend.get('/a'), undefined, 'get removes the expired row it finds')
  t.equal(await backend.purgeExpired(), 1, 'so only /b is left to purge')
  t.equal(await backend.purgeExpired(), 0)
})

t.test('expired rows are purged in the background', async (t) => {
  let now = 1_000_000
  const backend = openIn(t, join(await tempDir(t), 'warren.db'), { clock: () => now, purgeIntervalMs: 20 })
  await backend.put('/a', 'v', { ttlMs: 100 })
  now += 1000
  await sleep(100)
  t.equal(await backend.purgeExpired(), 0, 'nothing left for an explicit purge')
})

t.test('a TTL must be a positive number', async (t) => {
  const backend = openIn(t, join(await tempDir(t), 'warren.db'))
  for (const ttlMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    await t.rejects(backend.put('/a', 'v', { ttlMs }), RangeError, `put ttlMs ${ttlMs}`)
    await t.rejects(backend.txn([], [{ op: 'put', key: '/a', value: 'v', ttlMs }]), RangeError, `txn ttlMs ${ttlMs}`)
  }
  t.equal(await backend.get('/a'), undefined, 'nothing was written')
})

t.test('two handles on one file see each other and serialise their txns', async (t) => {
  const path = join(await tempDir(t), 'warren.db')
  const first = openIn(t, path)
  const second = openIn(t, path)
  const revision = await first.put('/token', 'v')
  t.match(await second.get('/token'), { revision })
  const results = await Promise.all([first, second, first, second].map((backend) => backend.txn([{ key: '/token', revision }], [{ op: 'delete', key: '/token' }])))
  t.equal(results.filter(Boolean).length, 1)
  t.ok((await second.put('/other', 'v')) > revision, 'both handles share the revision counter')
})

t.test('after close, calls say the backend is closed', async (t) => {
  const backend = SqliteBackend.open(join(await tempDir(t), 'warren.db'))
  await backend.close()
  await t.rejects(backend.get('/a'), { message: /is closed/ })
})

t.test('prefix upper bounds', async (t) => {
  t.equal(prefixUpperBound(''), undefined, 'empty prefix: no bound')
  t.equal(prefixUpperBound('/users/'), '/users0')
  t.equal(prefixUpperBound('a\u{10ffff}'), 'b', 'carries past the last code point')
  t.equal(prefixUpperBound('\u{10ffff}'), undefined)
  t.equal(prefixUpperBound('\ud7ff'), '\ue000', 'skips the surrogate range')
  t.equal(prefixUpperBound('/😀'), '/😁')
})

t.test('openBackend', async (t) => {
  const backend = await openBackend({ type: 'sqlite', path: join(await tempDir(t), 'warren.db') })
  t.teardown(() => backend.close())
  t.ok(backend instanceof SqliteBackend)
  await t.rejects(openBackend({ type: 'dynamodb' } as unknown as Parameters<typeof openBackend>[0]), { message: /unknown storage backend type "dynamodb"/ })
})

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
