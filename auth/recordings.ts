// Session recordings as the auth server keeps them: `<dir>/<id>.cast`, the asciicast v2 file
// exactly as the node wrote it, and `<dir>/<id>.json`, whose node it is and what a listing
// shows. Chunks are placed by offset: a chunk the file already holds changes nothing, one
// past its end is not written, and either way the answer says how much is held, so a node
// sending again after a lost answer, or after a restart, continues where the file ends.
// A recording belongs to the node that sent its first chunk, decided from that node's
// certificate; chunks of it from any other node are refused.
// Session IDs are the node's to choose, so each node has a quota: so many recordings open at
// once and so many bytes in all; recordings older than the audit retention are removed.
// Auth servers sharing an etcd backend share this folder too (auth/recording-dir-check.ts
// checks it): each keeps its own count of the quotas, so one that shares the folder with
// another counts it again from the folder every minute, and looks again before a refusal.

import { constants, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { open } from 'node:fs/promises'
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

/** Recordings of one node not yet ended (and written to lately) at once: a node runs a few interactive sessions, not dozens. */
export const MAX_OPEN_RECORDINGS = 32
/**
 * All of one node's recordings, in bytes: 64 whole recordings (16 MiB each), months of an
 * ordinary node, while a stolen node's keys can fill no more than this of the auth server's disk.
 */
export const MAX_HOST_RECORDING_BYTES = 1024 * 1024 * 1024
/** What each recording counts for besides its bytes (its two files), so that empty ones cannot be made without end. */
const RECORDING_OVERHEAD_BYTES = 4096
/** An unended recording written to less lately than this no longer counts as open: its node most likely lost it in a crash. */
const OPEN_IDLE_MS = 86_400_000
/** With another auth server writing into the folder, the counts are made afresh from it this often: what a node stores through the others counts here within this. */
const SHARED_RECOUNT_MS = 60_000
/** And before refusing a node its bytes, at most this often: it is refused for what the folder holds, not for what another server's purge removed. */
const REFUSAL_RECOUNT_MS = 1000

interface Meta {
  host_id: string
  node: string
  complete: boolean
  user: string | null
  login: string | null
  started: number
  duration_ms: number
  /** When this server last wrote the metadata (its clock): what retention goes by. Absent from earlier versions' files. */
  received?: number
}

/** One node's share of the store. */
interface HostUsage {
  bytes: number
  /** Unended recordings and when each was last written to. */
  open: Map<string, number>
}

/** What auth/recording-dir-check.ts found: the live auth servers on the same backend whose marker is in this folder, and those whose marker is not. */
export interface RecordingDirSharing {
  shared_with: string[]
  not_shared_with: string[]
}

export interface RecordingStoreOptions {
  /** Epoch milliseconds; injected so tests can move time. */
  clock?: () => number
  /** MAX_HOST_RECORDING_BYTES unless a test wants a quota it can fill. */
  maxHostBytes?: number
}

export class RecordingStore {
  readonly dir: string
  readonly #clock: () => number
  readonly #maxHostBytes: number
  /** Built from the directory on first use, then kept up to date, so that a chunk costs no directory scan. */
  #usage?: Map<string, HostUsage>
  /** When #usage was built (by the clock). */
  #countedAt = 0
  /** Undefined unless checked (an etcd backend): then other auth servers may write here too. */
  #sharing?: RecordingDirSharing
  /** Each recording's chunks one after another: a write awaits its fsync, and another chunk must not see the file half done. */
  readonly #queues = new Map<string, Promise<unknown>>()

  constructor(dir: string, options: RecordingStoreOptions = {}) {
    this.dir = dir
    this.#clock = options.clock ?? Date.now
    this.#maxHostBytes = options.maxHostBytes ?? MAX_HOST_RECORDING_BYTES
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  /**
   * Refuses a chunk its node's quota has no room for; cheap, so callers ask before they check
   * signatures. `store` asks again, exactly.
   */
  checkQuota(hostId: string, sessionId: string): void {
    const refusal = this.#refusal(hostId, (usage) => {
      if (usage.bytes >= this.#maxHostBytes) return quotaFull(hostId, this.#maxHostBytes)
      // An ID that is no recording's counts as new here; `store` refuses it, after the signature checks.
      const known = usage.open.has(sessionId) || (RECORDING_ID.test(sessionId) && existsSync(join(this.dir, `${sessionId}.json`)))
      if (!known && this.#openCount(usage) >= MAX_OPEN_RECORDINGS) return tooManyOpen(hostId, this.#untilSlotFrees(usage))
      return undefined
    })
    if (refusal) throw refusal
  }

  /** What the check of the folder found (auth/recording-dir-check.ts); undefined when nothing checks it. */
  get sharing(): RecordingDirSharing | undefined {
    return this.#sharing
  }

  set sharing(sharing: RecordingDirSharing) {
    this.#sharing = sharing
  }

  /** Places one chunk; `whose` looks up the session's user and login once the recording is whole. */
  async store(chunk: RecordingChunk, node: RecordingNode, whose: () => Promise<{ user: string | null; login: string | null }>): Promise<Held> {
    const id = checkedId(chunk.sessionId)
    const before = this.#queues.get(id) ?? Promise.resolve()
    const placed = before.then(
      () => this.#place(id, chunk, node, whose),
      () => this.#place(id, chunk, node, whose),
    )
    this.#queues.set(id, placed)
    try {
      return await placed
    } finally {
      if (this.#queues.get(id) === placed) this.#queues.delete(id)
    }
  }

  async #place(id: string, chunk: RecordingChunk, node: RecordingNode, whose: () => Promise<{ user: string | null; login: string | null }>): Promise<Held> {
    const meta = this.#meta(id)
    if (meta && meta.host_id !== node.hostId) throw new HttpError(403, `recording ${id} belongs to another node`)
    const path = join(this.dir, `${id}.cast`)
    let length = sizeOf(path)
    if (meta?.complete) return { length, complete: true }
    const end = chunk.offset + chunk.data.length
    if (end > MAX_RECORDING_BYTES + 1024) throw new HttpError(413, `a recording holds at most ${MAX_RECORDING_BYTES} bytes`)
    // Only the part past the file's end is new; a chunk that starts beyond it waits for the gap.
    const added = chunk.offset <= length && end > length ? end - length : 0
    const charged = added + (meta ? 0 : RECORDING_OVERHEAD_BYTES)
    const refusal = this.#refusal(node.hostId, (usage) => {
      if (!meta && this.#openCount(usage) >= MAX_OPEN_RECORDINGS) return tooManyOpen(node.hostId, this.#untilSlotFrees(usage))
      if (charged > 0 && usage.bytes + charged > this.#maxHostBytes) return quotaFull(node.hostId, this.#maxHostBytes)
      return undefined
    })
    if (refusal) throw refusal
    const usage = this.#usageOf(node.hostId)
    // Charged before the write's first await, so that chunks of other recordings arriving meanwhile see it.
    usage.bytes += charged
    usage.open.set(id, this.#clock())
    const current: Meta = meta ?? { host_id: node.hostId, node: node.nodename, complete: false, user: null, login: null, started: 0, duration_ms: 0, received: this.#clock() }
    try {
      if (added > 0) {
        // Synced before the answer: the node forgets a chunk once it is told the chunk is held.
        // Written at its offset, not appended: another auth server sharing the folder may be
        // placing the same chunk (a node's retry after a lost answer), and the same bytes
        // written twice at one place change nothing.
        const file = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600)
        try {
          // Until every byte is taken: a write may take part of them and say so only in its count.
          for (let at = length; at < end; ) {
            const { bytesWritten } = await file.write(chunk.data, at - chunk.offset, end - at, at)
            if (bytesWritten === 0) throw new Error(`nothing more of recording ${id} could be written`)
            at += bytesWritten
          }
          await file.sync()
        } finally {
          await file.close()
        }
        length = end
      }
      if (!meta) this.#writeMeta(id, current)
    } catch (error) {
      usage.bytes -= charged
      if (!meta) usage.open.delete(id)
      throw error
    }
    if (!chunk.end || end !== length) return { length, complete: false }
    const who = await whose()
    this.#writeMeta(id, { ...current, ...who, ...timing(readFileSync(path, NO_FOLLOW)), complete: true, received: this.#clock() })
    usage.open.delete(id)
    return { length, complete: true }
  }

  /** Removes the recordings last written before `retentionMs` ago (the audit retention: a recording outlives no audit event of its session); returns how many went. */
  purge(retentionMs: number): number {
    const cutoff = this.#clock() - retentionMs
    let removed = 0
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue
      const id = name.slice(0, -'.json'.length)
      if (this.#queues.has(id)) continue
      const meta = this.#meta(id)
      if (!meta || receivedOf(this.dir, id, meta) >= cutoff) continue
      const usage = this.#usageOf(meta.host_id)
      usage.bytes -= sizeOf(join(this.dir, `${id}.cast`)) + RECORDING_OVERHEAD_BYTES
      usage.open.delete(id)
      // The metadata first: without it the recording is not listed, and a cast left behind is overwritten if its ID comes again.
      rmSync(join(this.dir, name), { force: true })
      rmSync(join(this.dir, `${id}.cast`), { force: true })
      removed++
    }
    return removed
  }

  list(): RecordingJson[] {
    const recordings: RecordingJson[] = []
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue
      const id = name.slice(0, -'.json'.length)
      const meta = this.#meta(id)
      if (!meta) continue
      const path = join(this.dir, `${id}.cast`)
      const size = sizeOf(path)
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
    const cast = this.#meta(id) && readIfThere(path)
    if (cast === undefined) throw new HttpError(404, `no recording ${id}`)
    return cast
  }

  #usageOf(hostId: string): HostUsage {
    let usages = this.#usage
    if (!usages || (this.#sharing && this.#sharing.shared_with.length > 0 && this.#clock() - this.#countedAt >= SHARED_RECOUNT_MS)) usages = this.#recount()
    let usage = usages.get(hostId)
    if (!usage) {
      usage = { bytes: 0, open: new Map() }
      usages.set(hostId, usage)
    }
    return usage
  }

  /**
   * The refusal `judge` finds in the node's counts. When other auth servers may write into
   * the folder, a refusal is judged again on what the folder holds: the recordings this
   * server counts open may have been completed through another (each is looked up), its
   * bytes removed by another's purge (the folder is counted afresh, at most once a second).
   */
  #refusal(hostId: string, judge: (usage: HostUsage) => HttpError | undefined): HttpError | undefined {
    const usage = this.#usageOf(hostId)
    const refusal = judge(usage)
    if (!refusal || !this.#sharing) return refusal
    if (refusal.status === 429) {
      for (const id of usage.open.keys()) {
        // One whose first chunk this server is placing has no metadata yet.
        if (this.#queues.has(id)) continue
        const meta = this.#meta(id)
        if (!meta || meta.complete) usage.open.delete(id)
      }
    } else if (this.#clock() - this.#countedAt >= REFUSAL_RECOUNT_MS) {
      this.#recount()
    }
    return judge(this.#usageOf(hostId))
  }

  #recount(): Map<string, HostUsage> {
    this.#usage = this.#scanUsage()
    this.#countedAt = this.#clock()
    return this.#usage
  }

  #scanUsage(): Map<string, HostUsage> {
    const usages = new Map<string, HostUsage>()
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue
      const id = name.slice(0, -'.json'.length)
      const meta = this.#meta(id)
      if (!meta) continue
      const usage = usages.get(meta.host_id) ?? { bytes: 0, open: new Map<string, number>() }
      usages.set(meta.host_id, usage)
      const cast = join(this.dir, `${id}.cast`)
      usage.bytes += sizeOf(cast) + RECORDING_OVERHEAD_BYTES
      if (!meta.complete) usage.open.set(id, statSync(cast, { throwIfNoEntry: false })?.mtimeMs ?? receivedOf(this.dir, id, meta))
    }
    return usages
  }

  #openCount(usage: HostUsage): number {
    const idleSince = this.#clock() - OPEN_IDLE_MS
    let count = 0
    for (const written of usage.open.values()) if (written >= idleSince) count++
    return count
  }

  /** Milliseconds until the least lately written open recording stops counting (an end from the node frees one sooner). */
  #untilSlotFrees(usage: HostUsage): number {
    const idleSince = this.#clock() - OPEN_IDLE_MS
    let oldest = Infinity
    for (const written of usage.open.values()) if (written >= idleSince) oldest = Math.min(oldest, written)
    return oldest === Infinity ? 0 : oldest - idleSince + 1
  }

  #meta(id: string): Meta | undefined {
    const path = join(this.dir, `${id}.json`)
    const text = readIfThere(path)
    return text === undefined ? undefined : (JSON.parse(text) as Meta)
  }

  #writeMeta(id: string, meta: Meta): void {
    writeFileAtomic(join(this.dir, `${id}.json`), `${JSON.stringify(meta)}\n`)
  }
}

// 413 tells the node to give the recording up (it keeps no more of it); 429 to send it again later, once a session has ended.
function quotaFull(hostId: string, maxBytes: number): HttpError {
  return new HttpError(413, `node ${hostId} holds ${maxBytes} bytes of recordings, its most`)
}

/** Retry-After says when a slot frees for certain; the node waits at most its own bound of it. */
function tooManyOpen(hostId: string, waitMs: number): HttpError {
  return new HttpError(429, `node ${hostId} has ${MAX_OPEN_RECORDINGS} recordings open, its most`, { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))) })
}

// Files looked at may be gone the next moment: another auth server sharing the folder removes
// what is past retention, and its purge runs while this one lists or counts.
function sizeOf(path: string): number {
  return lstatSync(path, { throwIfNoEntry: false })?.size ?? 0
}

/**
 * Recordings are files, never links: one planted in the folder (shared with other hosts, it
 * may be writable by more than this server) must not have the server read or write whatever
 * it points at, such as the backend with the CAs' keys.
 */
const NO_FOLLOW = { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW } as const

function readIfThere(path: string): string | undefined {
  try {
    return readFileSync(path, NO_FOLLOW)
  } catch (error) {
    // ELOOP: a link, which is no recording.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ELOOP') return undefined
    throw error
  }
}

/** When the metadata was last written; for files of earlier versions, its modification time. */
function receivedOf(dir: string, id: string, meta: Meta): number {
  return meta.received ?? statSync(join(dir, `${id}.json`), { throwIfNoEntry: false })?.mtimeMs ?? 0
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
