// The auth server's recording store on a real directory: chunks placed by offset (a repeat
// or an overlap adds only what is new, a chunk past the end waits for the gap), the end
// marks the file whole with who and how long, and another node's chunks are refused.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { HttpError } from '../shared/api-router.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { RecordingStore } from './recordings.ts'

const ID = '3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21'
const CAST = '{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{}}\n[0.25,"o","hello\\r\\n"]\n[1.5,"r","100x30"]\n'
const pi = { hostId: 'host-pi', nodename: 'pi' }
const whose = async () => ({ user: 'carol', login: 'pi' })

/** The HTTP status `action` throws with. */
function statusOf(action: () => unknown): number | undefined {
  try {
    action()
  } catch (error) {
    return (error as HttpError).status
  }
  return undefined
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
  t.throws(() => store.store(chunk(40, CAST.length, true), other, whose), new HttpError(403, `recording ${ID} belongs to another node`))
  t.equal(
    statusOf(() => store.store({ ...chunk(0, 4), sessionId: '../../etc/passwd' }, pi, whose)),
    400,
  )
  t.equal(
    statusOf(() => store.read('../x')),
    400,
  )
  t.equal(
    statusOf(() => store.read('3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b22')),
    404,
  )
  t.equal(store.read(ID), CAST.slice(0, 40), 'unchanged')
})
