// The auth server's recording store on a real directory: chunks placed by offset (a repeat
// or an overlap adds only what is new, a chunk past the end waits for the gap), the end
// marks the file whole with who and how long, and another node's chunks are refused. Each
// node's quota (recordings open, bytes in all) and retention by the injected clock.

import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { HttpError } from '../shared/api-router.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { repoModule, underFileSizeLimit } from '../test/helpers/file-size-limit.ts'
import { statusOf as answerTo } from './api/errors.ts'
import { MAX_OPEN_RECORDINGS, RecordingStore } from './recordings.ts'

const ID = '3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21'
const CAST = '{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{}}\n[0.25,"o","hello\\r\\n"]\n[1.5,"r","100x30"]\n'
const pi = { hostId: 'host-pi', nodename: 'pi' }
const whose = async () => ({ user: 'carol', login: 'pi' })

const DAY = 86_400_000

/** The HTTP status `action` throws (or rejects) with. */
async function statusOf(action: () => unknown): Promise<number | undefined> {
  try {
    await action()
  } catch (error) {
    return (error as HttpError).status
  }
  return undefined
}

/** A recording ID, the Nth. */
function idOf(n: number): string {
  return `3b0c5d3e-5b0f-4c1e-9a53-${String(n).padStart(12, '0')}`
}

function chunk(from: number, to: number, end = false) {
  return { sessionId: ID, offset: from, data: Buffer.from(CAST).subarray(from, to), end }
}

t.test('chunks sent again, overlapping or early change nothing twice', async (t) => {
  const store = new RecordingStore(tempDir())
  t.same(await store.store(chunk(0, 40), pi, whose), { length: 40, complete: false })
  t.same(await store.store(chunk(0, 40), pi, whose), { length: 40, complete: false }, 'a repeat')
  t.same(await store.store(chunk(60, 80), pi, whose), { length: 40, complete: false }, 'past the end: waits for the gap')
  t.same(await store.store(chunk(20, 90), pi, whose), { length: 90, complete: false }, 'an overlap adds its tail')
  t.same(await store.store(chunk(90, CAST.length, true), pi, whose), { length: CAST.length, complete: true })
  t.equal(readFileSync(join(store.dir, `${ID}.cast`), 'utf8'), CAST)
  t.equal(store.read(ID), CAST)
  t.same(store.list(), [
    { session_id: ID, user: 'carol', login: 'pi', node: 'pi', host_id: 'host-pi', started: 1_700_000_000_000, duration_ms: 1500, size: CAST.length, complete: true },
  ])
  t.same(await store.store(chunk(0, 10, true), pi, whose), { length: CAST.length, complete: true }, 'a whole recording stays as it is')
})

t.test("another node's chunks and bad IDs are refused", async (t) => {
  const store = new RecordingStore(tempDir())
  await store.store(chunk(0, 40), pi, whose)
  const other = { hostId: 'host-other', nodename: 'other' }
  await t.rejects(store.store(chunk(40, CAST.length, true), other, whose), new HttpError(403, `recording ${ID} belongs to another node`))
  t.equal(await statusOf(() => store.store({ ...chunk(0, 4), sessionId: '../../etc/passwd' }, pi, whose)), 400)
  t.equal(await statusOf(() => store.read('../x')), 400)
  t.equal(await statusOf(() => store.read('3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b22')), 404)
  t.equal(store.read(ID), CAST.slice(0, 40), 'unchanged')
})

t.test('chunks of one recording sent at once are placed one after another', async (t) => {
  const store = new RecordingStore(tempDir())
  await Promise.all([store.store(chunk(0, 40), pi, whose), store.store(chunk(0, 40), pi, whose), store.store(chunk(20, 60), pi, whose)])
  t.equal(store.read(ID), CAST.slice(0, 60), 'no part written twice')
})

t.test('a node may keep so many recordings open, and so many bytes', async (t) => {
  let now = Date.now()
  const store = new RecordingStore(tempDir(), { clock: () => now })
  const other = { hostId: 'host-other', nodename: 'other' }
  for (let n = 0; n < MAX_OPEN_RECORDINGS; n++) await store.store({ ...chunk(0, 10), sessionId: idOf(n) }, pi, whose)
  t.equal(await statusOf(() => store.store({ ...chunk(0, 10), sessionId: idOf(99) }, pi, whose)), 429, 'one more is refused')
  t.equal(await statusOf(() => store.checkQuota(pi.hostId, idOf(99))), 429, 'and asked before, too')
  t.equal(existsSync(join(store.dir, `${idOf(99)}.json`)), false, 'nothing kept of it')
  t.same(await store.store({ ...chunk(10, 20), sessionId: idOf(0) }, pi, whose), { length: 20, complete: false }, 'an open one goes on')
  t.same(await store.store({ ...chunk(0, 10), sessionId: idOf(99) }, other, whose), { length: 10, complete: false }, 'another node has its own')
  await store.store({ ...chunk(10, CAST.length, true), sessionId: idOf(1) }, pi, whose)
  t.same(await store.store({ ...chunk(0, 10), sessionId: idOf(100) }, pi, whose), { length: 10, complete: false }, 'an ended one frees its place')
  now += 2 * DAY
  t.same(await store.store({ ...chunk(0, 10), sessionId: idOf(101) }, pi, whose), { length: 10, complete: false }, 'an open one long unwritten no longer counts')
  t.equal(await statusOf(() => store.checkQuota(pi.hostId, idOf(0))), undefined)
})

t.test('a node with too many open is told, in Retry-After, when one stops counting', async (t) => {
  let now = Date.UTC(2026, 11, 1, 12)
  const store = new RecordingStore(tempDir(), { clock: () => now })
  for (let n = 0; n < MAX_OPEN_RECORDINGS; n++) {
    await store.store({ ...chunk(0, 10), sessionId: idOf(n) }, pi, whose)
    now += 60_000
  }
  now += 3_600_000
  let refusal: unknown
  await store.store({ ...chunk(0, 10), sessionId: idOf(99) }, pi, whose).catch((error) => (refusal = error))
  const answer = answerTo(refusal)
  t.equal(answer?.status, 429)
  const retryAfterS = Number(answer?.headers?.['retry-after'])
  // The first was written 32 minutes and an hour ago: a day after it, it no longer counts.
  t.equal(retryAfterS, (DAY - 32 * 60_000 - 3_600_000) / 1000 + 1, 'the seconds until the least lately written one goes idle')
  let asked: unknown
  try {
    store.checkQuota(pi.hostId, idOf(99))
  } catch (error) {
    asked = error
  }
  t.same(answerTo(asked), answer, 'asked before, the same')
  now += retryAfterS * 1000 - 2000
  t.equal(await statusOf(() => store.checkQuota(pi.hostId, idOf(99))), 429, 'not before then')
  now += 2000
  t.equal(await statusOf(() => store.checkQuota(pi.hostId, idOf(99))), undefined, 'then there is room')
})

t.test('a node at its byte quota stores no more until retention frees it', async (t) => {
  // Each recording counts its bytes and 4 KiB for its files: this quota holds two of 10 bytes.
  const store = new RecordingStore(tempDir(), { maxHostBytes: 2 * (4096 + 10) })
  const other = { hostId: 'host-other', nodename: 'other' }
  await store.store({ ...chunk(0, 10, true), sessionId: idOf(1) }, pi, whose)
  await store.store({ ...chunk(0, 10), sessionId: idOf(2) }, pi, whose)
  t.equal(await statusOf(() => store.store({ ...chunk(10, 11), sessionId: idOf(2) }, pi, whose)), 413, 'one byte more is refused')
  t.same(await store.store({ ...chunk(0, 10), sessionId: idOf(2) }, pi, whose), { length: 10, complete: false }, 'a repeat adds nothing, and is answered')
  t.equal(await statusOf(() => store.checkQuota(pi.hostId, idOf(3))), 413, 'asked before, too')
  t.same(await store.store({ ...chunk(0, 10), sessionId: idOf(3) }, other, whose), { length: 10, complete: false }, 'another node is not held back')
  const reopened = new RecordingStore(store.dir, { maxHostBytes: 2 * (4096 + 10) })
  t.equal(await statusOf(() => reopened.checkQuota(pi.hostId, idOf(3))), 413, 'a store opened again counts what is there')
  t.equal(store.purge(0), 3, 'retention frees it')
  t.same(await store.store({ ...chunk(0, 10), sessionId: idOf(3) }, pi, whose), { length: 10, complete: false })
})

t.test('recordings older than the retention are removed, by the injected clock', async (t) => {
  let now = Date.UTC(2026, 11, 1)
  const store = new RecordingStore(tempDir(), { clock: () => now })
  await store.store({ ...chunk(0, CAST.length, true), sessionId: idOf(1) }, pi, whose)
  await store.store({ ...chunk(0, 10), sessionId: idOf(2) }, pi, whose)
  now += 50 * DAY
  await store.store({ ...chunk(0, CAST.length, true), sessionId: idOf(3) }, pi, whose)
  t.equal(store.purge(90 * DAY), 0, 'nothing is old enough yet')
  now += 41 * DAY
  t.equal(store.purge(90 * DAY), 2, 'the two from 91 days ago, ended or not')
  t.same(
    store.list().map((recording) => recording.session_id),
    [idOf(3)],
  )
  t.equal(existsSync(join(store.dir, `${idOf(1)}.cast`)), false, 'its cast is gone too')
  t.equal(await statusOf(() => store.read(idOf(2))), 404)
})

t.test('a chunk the disk takes only part of is refused, never answered as held', async (t) => {
  // Under a 1 KiB file size limit: the node would forget a chunk answered as held.
  const { answer, error, length } = underFileSizeLimit<{ answer: unknown; error: string | null; length: number }>(
    1,
    `import { statSync } from 'node:fs'
import { RecordingStore } from ${repoModule('auth/recordings.ts')}
const store = new RecordingStore('recordings')
let answer = null
let error = null
try {
  answer = await store.store({ sessionId: '${ID}', offset: 0, data: Buffer.alloc(3000, 'a'), end: false }, { hostId: 'host-pi', nodename: 'pi' }, async () => ({ user: 'carol', login: 'pi' }))
} catch (e) {
  error = e.code
}
process.stdout.write(JSON.stringify({ answer, error, length: statSync('recordings/${ID}.cast').size }))
`,
  )
  t.equal(answer, null, 'no answer that the bytes are held')
  t.equal(error, 'EFBIG')
  t.ok(length < 3000, 'as the disk holds less')
})

t.test('a link planted in the folder is no recording: the server neither reads nor writes what it points at', async (t) => {
  const dir = tempDir()
  const store = new RecordingStore(dir)
  const secret = join(tempDir(), 'backend.db')
  writeFileSync(secret, 'the CAs keys')
  const planted = idOf(7)
  symlinkSync(secret, join(dir, `${planted}.cast`))
  writeFileSync(
    join(dir, `${planted}.json`),
    JSON.stringify({ host_id: pi.hostId, node: pi.nodename, complete: true, user: 'carol', login: 'pi', started: 0, duration_ms: 0, received: 0 }),
  )
  t.equal(await statusOf(() => store.read(planted)), 404, 'not read')
  const open = idOf(8)
  symlinkSync(secret, join(dir, `${open}.cast`))
  await t.rejects(store.store({ sessionId: open, offset: 0, data: Buffer.alloc(4096, 'a'), end: false }, pi, whose), { code: 'ELOOP' }, 'not written through')
  t.equal(readFileSync(secret, 'utf8'), 'the CAs keys', 'what it points at is as it was')
})
