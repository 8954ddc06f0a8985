// Two auth servers' recording stores on one folder (auth_service.recording_dir shared, as auth
// servers on one etcd must share it), in one process with an injected clock: nothing may
// assume a server has the folder to itself. A chunk placed through both at once is stored
// once; a node's open recordings completed through the other, and its bytes the other's purge
// removed, do not hold it back; what it stores through the other counts within a minute; and
// the marker an auth server leaves in the folder is no recording.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { MARKER_PREFIX } from '../auth/recording-dir-check.ts'
import { MAX_OPEN_RECORDINGS, type RecordingDirSharing, RecordingStore } from '../auth/recordings.ts'
import type { HttpError } from '../shared/api-router.ts'
import { RECORDING_ID } from '../shared/protocol/recordings.ts'
import { tempDir } from './helpers/cluster.ts'

const CAST = '{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{}}\n[0.25,"o","hello\\r\\n"]\n[1.5,"r","100x30"]\n'
const pi = { hostId: 'host-pi', nodename: 'pi' }
const whose = async () => ({ user: 'carol', login: 'pi' })
const DAY = 86_400_000
/** What auth/recording-dir-check.ts tells each store of a folder shared with the other server. */
const SHARED: RecordingDirSharing = { shared_with: ['0123456789abcdef'], not_shared_with: [] }

const idOf = (n: number) => `3b0c5d3e-5b0f-4c1e-9a53-${String(n).padStart(12, '0')}`
const chunk = (id: string, from: number, to: number, end = to >= CAST.length) => ({ sessionId: id, offset: from, data: Buffer.from(CAST).subarray(from, to), end })

/** Stores A and B on one folder, each with a clock of its own and told the folder is shared. */
function twoServers(options: { maxHostBytes?: number } = {}) {
  const dir = tempDir()
  const clocks = { a: Date.now(), b: Date.now() }
  const a = new RecordingStore(dir, { clock: () => clocks.a, ...options })
  const b = new RecordingStore(dir, { clock: () => clocks.b, ...options })
  a.sharing = SHARED
  b.sharing = SHARED
  return { dir, clocks, a, b }
}

async function statusOf(action: () => unknown): Promise<number | undefined> {
  try {
    await action()
  } catch (error) {
    return (error as HttpError).status
  }
  return undefined
}

t.test('one chunk placed through both servers at once is stored once', async (t) => {
  const { dir, a, b } = twoServers()
  // A node's retry through B while A still writes: both see the file empty, both place the bytes.
  const [throughA, throughB] = await Promise.all([a.store(chunk(idOf(1), 0, 40), pi, whose), b.store(chunk(idOf(1), 0, 40), pi, whose)])
  t.same(
    [throughA, throughB],
    [
      { length: 40, complete: false },
      { length: 40, complete: false },
    ],
    'both answer that 40 bytes are held',
  )
  t.equal(readFileSync(join(dir, `${idOf(1)}.cast`), 'utf8'), CAST.slice(0, 40), 'the bytes once, not twice')
  await Promise.all([a.store(chunk(idOf(1), 40, CAST.length), pi, whose), b.store(chunk(idOf(1), 40, CAST.length), pi, whose)])
  t.equal(a.read(idOf(1)), CAST, 'the rest likewise: the file is whole')
  t.match(b.list(), [{ session_id: idOf(1), size: CAST.length, complete: true }])
})

t.test('recordings opened through A and completed through B do not hold the node back on A', async (t) => {
  const { a, b } = twoServers()
  for (let n = 0; n < MAX_OPEN_RECORDINGS; n++) await a.store(chunk(idOf(n), 0, 40), pi, whose)
  t.equal(await statusOf(() => a.checkQuota(pi.hostId, idOf(99))), 429, 'A: the node has its most open')
  for (let n = 0; n < MAX_OPEN_RECORDINGS; n++) await b.store(chunk(idOf(n), 40, CAST.length), pi, whose)
  t.equal(await statusOf(() => a.checkQuota(pi.hostId, idOf(99))), undefined, 'A asks the folder before refusing: none is open')
  t.same(await a.store(chunk(idOf(99), 0, 40), pi, whose), { length: 40, complete: false }, 'and takes a new one')
})

t.test("bytes removed by B's purge are not held against the node on A", async (t) => {
  const { a, b, clocks } = twoServers({ maxHostBytes: 4096 + 4 * (4096 + CAST.length) })
  for (let n = 0; n < 4; n++) await a.store(chunk(idOf(n), 0, CAST.length), pi, whose)
  t.equal(await statusOf(() => a.store(chunk(idOf(10), 0, CAST.length), pi, whose)), 413, 'A: the node is at its quota')
  clocks.b += 100 * DAY
  t.equal(b.purge(90 * DAY), 4, "B's purge removes them (past retention)")
  // Two seconds on for A: before its minute, but a refusal looks at the folder again (at most once a second).
  clocks.a += 2000
  t.same(await a.store(chunk(idOf(10), 0, CAST.length), pi, whose), { length: CAST.length, complete: true }, 'A counts the folder again before refusing, and takes it')
})

t.test('what a node stores through B counts on A within a minute', async (t) => {
  const { a, b, clocks } = twoServers({ maxHostBytes: 3 * (4096 + CAST.length) })
  await a.store(chunk(idOf(0), 0, CAST.length), pi, whose)
  await b.store(chunk(idOf(1), 0, CAST.length), pi, whose)
  await b.store(chunk(idOf(2), 0, CAST.length), pi, whose)
  t.equal(await statusOf(() => b.checkQuota(pi.hostId, idOf(3))), 413, 'B, which counted the folder when it began, is full')
  // A counted the folder before B wrote: it takes one more, the most a node gains by spreading its uploads.
  t.equal(await statusOf(() => a.checkQuota(pi.hostId, idOf(3))), undefined, 'A does not know yet')
  clocks.a += 30_000
  t.equal(await statusOf(() => a.checkQuota(pi.hostId, idOf(3))), undefined, 'nor half a minute on')
  clocks.a += 30_000
  t.equal(await statusOf(() => a.checkQuota(pi.hostId, idOf(3))), 413, 'a minute on, A has counted the folder again')
})

t.test('the same store not told of sharing (SQLite, one auth server) keeps its counts as before', async (t) => {
  const dir = tempDir()
  const a = new RecordingStore(dir)
  const b = new RecordingStore(dir)
  for (let n = 0; n < MAX_OPEN_RECORDINGS; n++) await a.store(chunk(idOf(n), 0, 40), pi, whose)
  for (let n = 0; n < MAX_OPEN_RECORDINGS; n++) await b.store(chunk(idOf(n), 40, CAST.length), pi, whose)
  t.equal(await statusOf(() => a.checkQuota(pi.hostId, idOf(99))), 429, 'no look at the folder: nobody else writes there')
})

t.test("an auth server's marker is no recording", async (t) => {
  const { dir, a, clocks } = twoServers()
  const name = `${MARKER_PREFIX}0123456789abcdef`
  writeFileSync(join(dir, name), '{"id":"0123456789abcdef"}\n')
  t.notOk(RECORDING_ID.test(name), 'its name is no session ID')
  t.notOk(RECORDING_ID.test(name.slice(1)), 'nor without its dot')
  t.same(a.list(), [], 'not listed')
  t.equal(await statusOf(() => a.read(name)), 400, 'not read')
  t.equal(await statusOf(() => a.store(chunk(name, 0, 40), pi, whose)), 400, 'not written to by a node')
  clocks.a += 1000 * DAY
  t.equal(a.purge(90 * DAY), 0, 'not purged')
  t.equal(readFileSync(join(dir, name), 'utf8'), '{"id":"0123456789abcdef"}\n', 'left as it was')
})
