// The node's uploader against the auth server's store, in one process on real files: a
// recording larger than a chunk arrives byte for byte; answers lost mid-upload (the auth
// server has the chunk, the node does not know) and a restart of the node resume where the
// store's copy ends, nothing written twice; the node's copy goes once the store's is whole;
// and an answer saying the cluster does not record stops the node recording. A node with
// too many recordings open at the store (429 with Retry-After) keeps its file and sends no
// sooner than that, by an injected clock and timer.

import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { statusOf } from '../auth/api/errors.ts'
import { MAX_OPEN_RECORDINGS, RecordingStore } from '../auth/recordings.ts'
import { ApiError } from '../shared/errors.ts'
import { createLogger } from '../shared/log.ts'
import { RECORDING_CHUNK_BYTES, type RecordingChunkIn, type RecordingStored } from '../shared/protocol/recordings.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { NodeRecordings } from './node-recordings.ts'
import { RecordingUploader } from './recording-uploader.ts'

const ID = '3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21'
/** The next session's recording, as the SSH server names it. */
const NEXT = '5d2e7f10-9c3b-4a1e-8b53-2f1d7f0e4b22'
const log = createLogger('test')
const node = { hostId: 'host-pi', nodename: 'pi' }

/** A recording of about three and a half chunks. */
function cast(): string {
  const lines = ['{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{}}']
  for (let i = 0; lines.join('\n').length < RECORDING_CHUNK_BYTES * 3.5; i++) lines.push(JSON.stringify([i / 10, 'o', `line ${i} ${'x'.repeat(60)}\r\n`]))
  return `${lines.join('\n')}\n`
}

/** Waits until `done`, for at most 10 s. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await sleep(50)
}

t.test('lost answers and a restart resume where the store ends; the node keeps its copy until the store has it whole', async (t) => {
  const dataDir = tempDir()
  const dir = join(dataDir, 'node-recordings')
  mkdirSync(dir)
  const text = cast()
  writeFileSync(join(dir, `${ID}.cast`), text)
  const store = new RecordingStore(tempDir())
  const sent: number[] = []
  // The second answer is lost after the store took the chunk; the fourth call never arrives.
  let calls = 0
  const send = async (chunk: RecordingChunkIn): Promise<RecordingStored> => {
    calls++
    if (calls === 4) throw new Error('the tunnel closed before the answer came')
    sent.push(chunk.offset)
    const held = await store.store({ sessionId: chunk.session_id, offset: chunk.offset, data: Buffer.from(chunk.data, 'base64'), end: chunk.end ?? false }, node, async () => ({
      user: 'carol',
      login: 'pi',
    }))
    if (calls === 2) {
      // The node stops here, before its retry of this chunk could run: the restart below is what resumes.
      first.stop()
      throw new Error('no answer from the proxy')
    }
    return { ...held, recording: 'node' }
  }
  const first = new RecordingUploader({ dir, transport: () => send, refused: () => false, policy: () => {}, log })
  first.kick()
  await until(() => calls >= 2)
  t.ok(existsSync(join(dir, `${ID}.cast`)), 'kept while the upload is unfinished')

  // The node restarts: a new uploader, knowing nothing, sends from the start once and is told where the store ends.
  const second = new NodeRecordings({ dataDir, direct: () => undefined, tunnel: () => undefined, log })
  second.stop()
  const again = new RecordingUploader({ dir, transport: () => send, refused: () => false, policy: () => {}, log })
  t.teardown(() => again.stop())
  again.kick()
  await until(() => !existsSync(join(dir, `${ID}.cast`)))
  t.notOk(existsSync(join(dir, `${ID}.cast`)), "the node's copy goes once the store's is whole")
  t.equal(store.read(ID), text, 'byte for byte')
  t.match(store.list(), [{ session_id: ID, complete: true, size: Buffer.byteLength(text) }])
  const chunk = RECORDING_CHUNK_BYTES
  t.same(sent, [0, chunk, 0, 2 * chunk, 3 * chunk], "two chunks, the second's answer lost; after the restart one from the start, told where the store ends, then on from there")
})

t.test('an answer saying the cluster does not record stops the node recording', async (t) => {
  const dataDir = tempDir()
  mkdirSync(join(dataDir, 'node-recordings'))
  writeFileSync(join(dataDir, 'node-recordings', `${ID}.cast`), cast())
  let now = 1_000_000
  const recordings = new NodeRecordings({
    dataDir,
    direct: () => undefined,
    tunnel: () => ({
      deliverRecording: async (chunk: RecordingChunkIn) => ({ length: chunk.offset + Buffer.from(chunk.data, 'base64').length, complete: true, recording: 'off' as const }),
    }),
    log,
    clock: () => now,
  })
  t.teardown(() => recordings.stop())
  t.match(recordings.place('carol', NEXT), { dir: join(dataDir, 'node-recordings') }, 'recording until told otherwise')
  await until(() => recordings.place('carol', NEXT) === undefined)
  t.equal(recordings.place('carol', NEXT), undefined, 'off: the next session is not recorded, and no audit event says so')
  t.notOk(existsSync(join(dataDir, 'node-recordings', `${ID}.cast`)), 'the recording the auth server would not keep is gone')
  now += 3600_000
  t.match(recordings.place('carol', NEXT), { dir: join(dataDir, 'node-recordings') }, 'an hour on, the next session is recorded to ask again')
})

t.test('a recording cut short by the agent stopping is uploaded as it is', async (t) => {
  const dataDir = tempDir()
  mkdirSync(join(dataDir, 'node-recordings'))
  writeFileSync(join(dataDir, 'node-recordings', `${ID}.cast.part`), '{"version":2,"width":80,"height":24,"timestamp":1}\n')
  const store = new RecordingStore(tempDir())
  const recordings = new NodeRecordings({
    dataDir,
    direct: () => undefined,
    tunnel: () => ({
      deliverRecording: async (chunk: RecordingChunkIn) => ({
        ...(await store.store({ sessionId: chunk.session_id, offset: chunk.offset, data: Buffer.from(chunk.data, 'base64'), end: chunk.end ?? false }, node, async () => ({
          user: null,
          login: null,
        }))),
        recording: 'node' as const,
      }),
    }),
    log,
  })
  t.teardown(() => recordings.stop())
  await until(() => store.list()[0]?.complete === true)
  t.equal(store.read(ID), '{"version":2,"width":80,"height":24,"timestamp":1}\n')
})

t.test('past the bound of recordings waiting for the auth server, new sessions are not recorded', async (t) => {
  const dataDir = tempDir()
  mkdirSync(join(dataDir, 'node-recordings'))
  const recordings = new NodeRecordings({ dataDir, direct: () => undefined, tunnel: () => undefined, log, maxWaitingBytes: 1000 })
  t.teardown(() => recordings.stop())
  t.match(recordings.place('carol', NEXT), { dir: join(dataDir, 'node-recordings') })
  writeFileSync(join(dataDir, 'node-recordings', `${ID}.cast`), 'x'.repeat(1000))
  t.match(recordings.place('carol', NEXT), { skipped: { code: 'node_full', reason: String } }, 'full: not recorded, and why')
})

t.test('a recording refused for too many open waits the Retry-After, then is uploaded', async (t) => {
  const DAY = 86_400_000
  const T0 = Date.UTC(2026, 11, 1, 12)
  let now = T0 - DAY + 5 * 60_000
  const timers: { at: number; run: () => void }[] = []
  const setTimer = (run: () => void, ms: number) => {
    const timer = { at: now + ms, run }
    timers.push(timer)
    return () => void (timers.includes(timer) && timers.splice(timers.indexOf(timer), 1))
  }
  const advance = (to: number) => {
    now = to
    for (const timer of timers.filter((timer) => timer.at <= to)) {
      timers.splice(timers.indexOf(timer), 1)
      timer.run()
    }
  }
  const store = new RecordingStore(tempDir(), { clock: () => now })
  const whose = async () => ({ user: null, login: null })
  // Recordings the node lost before they ended, the oldest written a day less five minutes before T0.
  for (let n = 0; n < MAX_OPEN_RECORDINGS; n++) {
    await store.store({ sessionId: `3b0c5d3e-5b0f-4c1e-9a53-${String(n).padStart(12, '0')}`, offset: 0, data: Buffer.from('{}\n'), end: false }, node, whose)
    now += 60_000
  }
  now = T0
  const dir = join(tempDir(), 'node-recordings')
  mkdirSync(dir)
  writeFileSync(join(dir, `${ID}.cast`), '{"version":2,"width":80,"height":24,"timestamp":1}\n')
  const attempts: { at: number; status: number }[] = []
  const send = async (chunk: RecordingChunkIn): Promise<RecordingStored> => {
    try {
      const held = await store.store({ sessionId: chunk.session_id, offset: chunk.offset, data: Buffer.from(chunk.data, 'base64'), end: chunk.end ?? false }, node, whose)
      attempts.push({ at: now, status: 200 })
      return { ...held, recording: 'node' }
    } catch (error) {
      // As the node's ApiClient reads the answer: status and Retry-After.
      const answer = statusOf(error)!
      attempts.push({ at: now, status: answer.status })
      throw new ApiError(answer.status, (error as Error).message, Number(answer.headers!['retry-after']))
    }
  }
  const uploader = new RecordingUploader({ dir, transport: () => send, refused: () => false, policy: () => {}, log, clock: () => now, setTimer })
  t.teardown(() => uploader.stop())
  uploader.kick()
  await until(() => attempts.length === 1 && timers.length === 1)
  t.same(attempts, [{ at: T0, status: 429 }])
  const freesAt = T0 + 5 * 60_000 + 1000
  t.ok(timers[0].at >= freesAt, 'the retry is set for no sooner than Retry-After (5 min, when the oldest open one stops counting)')
  uploader.kick()
  advance(freesAt - 1)
  uploader.kick()
  await sleep(20)
  t.equal(attempts.length, 1, 'nothing sent before then')
  t.ok(existsSync(join(dir, `${ID}.cast`)), 'and the recording kept')
  advance(Math.max(freesAt, timers[0]?.at ?? freesAt))
  await until(() => !existsSync(join(dir, `${ID}.cast`)))
  t.same(attempts.slice(1), [{ at: freesAt, status: 200 }], 'sent once the wait is over, and taken')
  t.match(
    store.list().find((r) => r.session_id === ID),
    { complete: true },
  )
})
