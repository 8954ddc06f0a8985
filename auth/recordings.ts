// Session recordings as the auth server keeps them: `<dir>/<id>.cast`, the asciicast v2 file
// exactly as the node wrote it, and `<dir>/<id>.json`, whose node it is and what a listing
// shows. Chunks are placed by offset: a chunk the file already holds changes nothing, one
// past its end is not written, and either way the answer says how much is held, so a node
// sending again after a lost answer, or after a restart, continues where the file ends.
// A recording belongs to the node that sent its first chunk, decided from that node's
// certificate; chunks of it from any other node are refused.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { HttpError } from '../shared/api-router.ts'
import { writeFileAtomic } from '../shared/files.ts'
import { MAX_RECORDING_BYTES, RECORDING_ID, type RecordingJson, type RecordingStored } from '../shared/protocol/recordings.ts'

export interface RecordingChunk {
  sessionId: string
  offset: number
  data: Buffer
  end: boolean
}

/** Who sent a chunk: the node its certificate (or its tunnel's) proved. */
export interface RecordingNode {
  hostId: string
  nodename: string
}

/** How much of a recording is held, and whether it is whole. */
export type Held = Omit<RecordingStored, 'recording'>

interface Meta {
  host_id: string
  node: string
  complete: boolean
  user: string | null
  login: string | null
  started: number
  duration_ms: number
}

export class RecordingStore {
  readonly dir: string

  constructor(dir: string) {
    this.dir = dir
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  /** Places one chunk; `whose` looks up the session's user and login once the recording is whole. */
  store(chunk: RecordingChunk, node: RecordingNode, whose: () => Promise<{ user: string | null; login: string | null }>): Promise<Held> | Held {
    const id = checkedId(chunk.sessionId)
    const meta = this.#meta(id)
    if (meta && meta.host_id !== node.hostId) throw new HttpError(403, `recording ${id} belongs to another node`)
    const path = join(this.dir, `${id}.cast`)
    let length = existsSync(path) ? statSync(path).size : 0
    const current: Meta = meta ?? { host_id: node.hostId, node: node.nodename, complete: false, user: null, login: null, started: 0, duration_ms: 0 }
    if (current.complete) return { length, complete: true }
    const end = chunk.offset + chunk.data.length
    if (end > MAX_RECORDING_BYTES + 1024) throw new HttpError(413, `a recording holds at most ${MAX_RECORDING_BYTES} bytes`)
    // Only the part past the file's end is new; a chunk that starts beyond it waits for the gap.
    if (chunk.offset <= length && end > length) {
      const fd = openSync(path, 'a', 0o600)
      try {
        writeSync(fd, chunk.data, length - chunk.offset)
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      length = end
    }
    if (!meta) this.#writeMeta(id, current)
    if (!chunk.end || end !== length) return { length, complete: false }
    return whose().then((who) => {
      this.#writeMeta(id, { ...current, ...who, ...timing(readFileSync(path, 'utf8')), complete: true })
      return { length, complete: true }
    })
  }

  list(): RecordingJson[] {
    const recordings: RecordingJson[] = []
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue
      const id = name.slice(0, -'.json'.length)
      const meta = this.#meta(id)
      if (!meta) continue
      const path = join(this.dir, `${id}.cast`)
      const size = existsSync(path) ? statSync(path).size : 0
      recordings.push({
        session_id: id,
        user: meta.user,
        login: meta.login,
        node: meta.node,
        host_id: meta.host_id,
        started: meta.started,
        duration_ms: meta.duration_ms,
        size,
        complete: meta.complete,
      })
    }
    return recordings.sort((a, b) => a.started - b.started)
  }

  /** The file, exactly as stored. */
  read(sessionId: string): string {
    const id = checkedId(sessionId)
    const path = join(this.dir, `${id}.cast`)
    if (!this.#meta(id) || !existsSync(path)) throw new HttpError(404, `no recording ${id}`)
    return readFileSync(path, 'utf8')
  }

  #meta(id: string): Meta | undefined {
    const path = join(this.dir, `${id}.json`)
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Meta) : undefined
  }

  #writeMeta(id: string, meta: Meta): void {
    writeFileAtomic(join(this.dir, `${id}.json`), `${JSON.stringify(meta)}\n`)
  }
}

function checkedId(id: string): string {
  if (!RECORDING_ID.test(id)) throw new HttpError(400, 'field "session_id" must be a session ID (a UUID, with ".N" for a further pty)')
  return id
}

/** When the recording started (its header) and how long it ran (its last event). */
function timing(cast: string): { started: number; duration_ms: number } {
  const lines = cast.split('\n').filter((line) => line.length > 0)
  try {
    const header = JSON.parse(lines[0] ?? '{}') as { timestamp?: number }
    const last = lines.length > 1 ? (JSON.parse(lines.at(-1)!) as [number]) : [0]
    return { started: (header.timestamp ?? 0) * 1000, duration_ms: Math.round((last[0] ?? 0) * 1000) }
  } catch {
    return { started: 0, duration_ms: 0 }
  }
}
