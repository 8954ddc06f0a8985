// Where the node keeps its recordings, on real folders with the real classes: its outbox is
// <data_dir>/node-recordings, never the auth store's <data_dir>/recordings. Recordings that
// waited in <data_dir>/recordings from before that change (a node-only data dir) move to the
// outbox and are uploaded; a <data_dir>/recordings that is an auth store's (its <id>.json
// files) is left alone: neither uploaded as the node's own nor deleted.

import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { RecordingStore } from '../auth/recordings.ts'
import { HttpError } from '../shared/api-router.ts'
import { ApiError } from '../shared/errors.ts'
import { createLogger } from '../shared/log.ts'
import type { RecordingChunkIn, RecordingStored } from '../shared/protocol/recordings.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { NodeRecordings } from './node-recordings.ts'

const log = createLogger('test', { level: 'error' })
const THIS_NODE = { hostId: 'host-pi', nodename: 'pi' }
const OTHER_NODE = { hostId: 'host-other', nodename: 'other' }
const OLD = '11111111-1111-4111-8111-111111111111'
const CUT = '22222222-2222-4222-8222-222222222222'
const NEW = '33333333-3333-4333-8333-333333333333'
const OTHERS = '44444444-4444-4444-8444-444444444444'

const cast = (text: string) => `{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{}}\n[0.1,"o","${text}"]\n`

async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await sleep(50)
}

/** A tunnel whose proxy hands chunks to `store` as this node's, as the auth server does (its refusals as the API's errors). */
function tunnelTo(store: RecordingStore, sent: string[]) {
  return () => ({
    deliverRecording: async (chunk: RecordingChunkIn): Promise<RecordingStored> => {
      sent.push(chunk.session_id)
      try {
        const data = Buffer.from(chunk.data, 'base64')
        const held = await store.store({ sessionId: chunk.session_id, offset: chunk.offset, data, end: chunk.end ?? false }, THIS_NODE, async () => ({
          user: 'carol',
          login: 'pi',
        }))
        return { ...held, recording: 'node' }
      } catch (error) {
        throw error instanceof HttpError ? new ApiError(error.status, error.message) : error
      }
    },
  })
}

/** Stores `text` whole as `node`'s recording `id`. */
async function storeWhole(store: RecordingStore, id: string, text: string, node: typeof THIS_NODE): Promise<void> {
  await store.store({ sessionId: id, offset: 0, data: Buffer.from(text), end: true }, node, async () => ({ user: 'dave', login: 'root' }))
}

t.test('a node-only data dir: recordings waiting in the old folder move to the outbox and are uploaded', async (t) => {
  const dataDir = tempDir()
  const old = join(dataDir, 'recordings')
  mkdirSync(old)
  writeFileSync(join(old, `${OLD}.cast`), cast('finished before the upgrade'))
  writeFileSync(join(old, `${CUT}.cast.part`), cast('cut short by a stop'))
  utimesSync(join(old, `${OLD}.cast`), new Date(1000), new Date(1000))
  const store = new RecordingStore(tempDir())
  const sent: string[] = []
  const recordings = new NodeRecordings({ dataDir, direct: () => undefined, tunnel: tunnelTo(store, sent), log })
  t.teardown(() => recordings.stop())
  t.match(recordings.place('carol', NEW), { dir: join(dataDir, 'node-recordings') }, 'new sessions are recorded in the outbox of its own')
  await until(() => store.list().filter((r) => r.complete).length === 2)
  t.equal(store.read(OLD), cast('finished before the upgrade'), 'the finished recording arrives byte for byte')
  t.equal(store.read(CUT), cast('cut short by a stop'), 'the interrupted one is uploaded as it is')
  t.equal(sent[0], OLD, 'oldest first: the move kept the times')
  t.match(store.list(), [{ complete: true }, { complete: true }])
  t.same(readdirSync(old), [], 'nothing is left in the old folder')
  await until(() => readdirSync(join(dataDir, 'node-recordings')).length === 0)
  t.same(readdirSync(join(dataDir, 'node-recordings')), [], "the outbox is empty once the store's copies are whole")
})

t.test("an auth store in <data_dir>/recordings is not the node's: none of its recordings is sent, refused or deleted", async (t) => {
  const dataDir = tempDir()
  // The auth role of this data dir keeps recordings at the default place, this node's and another's among them.
  const store = new RecordingStore(join(dataDir, 'recordings'))
  await storeWhole(store, OTHERS, cast("another node's session"), OTHER_NODE)
  await storeWhole(store, OLD, cast("this node's earlier session"), THIS_NODE)
  // A session recorded since, waiting in the outbox: once it is uploaded, the uploader has looked at everything.
  mkdirSync(join(dataDir, 'node-recordings'))
  writeFileSync(join(dataDir, 'node-recordings', `${NEW}.cast`), cast('recorded now'))
  const sent: string[] = []
  const recordings = new NodeRecordings({ dataDir, direct: () => undefined, tunnel: tunnelTo(store, sent), log, maxWaitingBytes: 4096 })
  t.teardown(() => recordings.stop())
  await until(() => store.list().find((r) => r.session_id === NEW)?.complete === true)
  t.equal(store.read(NEW), cast('recorded now'), "the outbox's recording is uploaded")
  t.same([...new Set(sent)], [NEW], "no chunk of the store's own recordings is sent")
  t.equal(store.read(OTHERS), cast("another node's session"), "another node's recording is kept")
  t.equal(store.read(OLD), cast("this node's earlier session"), "this node's stored recording is kept")
  t.ok(existsSync(join(dataDir, 'recordings', `${OTHERS}.json`)) && existsSync(join(dataDir, 'recordings', `${OLD}.cast`)), 'the store is as it was')
  // The store's recordings hold no room of the node's bound: 4 KiB of stored recordings would fill it.
  await storeWhole(store, '55555555-5555-4555-8555-555555555555', 'x'.repeat(8192), OTHER_NODE)
  t.match(recordings.place('carol', OTHERS), { dir: join(dataDir, 'node-recordings') }, "stored recordings do not count against the node's waiting bytes")
})
