// The node's session recordings: where the SSH server writes them, and the uploader that
// takes them to the auth server, through a tunnel's proxy or straight for a direct node.
// The cluster's `auth_service.recording` comes back with each upload's answer: at `off`
// the node records nothing for an hour, then records the next session to hear it again.
//
// The node's outbox is `<data_dir>/node-recordings`, a folder of its own: an auth server in
// the same data dir keeps its recordings in `<data_dir>/recordings` by default, and an
// uploader reading the store's folder would take the store's files for its own (shared/
// config.ts refuses an `auth_service.recording_dir` that is the outbox).
//
// What waits is bounded (MAX_WAITING_BYTES), and each user's recordings, being written or
// waiting, to a share of it (USER_SHARES): a user who fills their share (five shells printing
// without end) stops their own sessions being recorded, never the others'. A session not
// recorded for room is an audit event, `recording.skipped` (ssh-server.ts).

import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { nodeRecordingsDir } from '../shared/config.ts'
import { ApiError } from '../shared/errors.ts'
import type { Logger } from '../shared/log.ts'
import type { RecordingChunkIn } from '../shared/protocol/recordings.ts'
import { type RecordingTransport, RecordingUploader } from './recording-uploader.ts'
import { finishInterrupted, type RecordingPlace } from './session-recording.ts'
import { type AgentTunnel, AuditRefused } from './tunnel.ts'

/** How long an `off` heard from the auth server holds before the node asks again. */
const OFF_HOLDS_MS = 3600_000
/**
 * At most this much of recordings waits for the auth server; beyond it, new sessions are not
 * recorded until uploads make room. A device that cannot reach the cluster for long keeps
 * its storage (four sessions at the 16 MiB cap, or days of ordinary shells).
 */
export const MAX_WAITING_BYTES = 64 * 1024 * 1024
/**
 * One user's recordings, being written or waiting, hold at most this part of the bound: past
 * it their recordings stop growing and their new sessions are not recorded, so that it takes
 * this many users filling theirs to stop everyone's sessions being recorded.
 */
export const USER_SHARES = 4

/** One user's recordings this process made that are still on disk. */
interface Held {
  /** What they hold, by the lines written. */
  bytes: number
  /** One of them stopped growing for want of room: new sessions wait for an upload to make some. */
  full: boolean
  /** Their bytes by path (`<id>.cast`, written as `<id>.cast.part`). */
  recordings: Map<string, number>
}

export interface NodeRecordingsOptions {
  dataDir: string
  /** The auth server's address and this node's credentials, while the node is in direct mode. */
  direct: () => { server: string; caPems: string[]; certPem: string; keyPem: string } | undefined
  /** A tunnel whose proxy carries audit events and recordings. */
  tunnel: () => Pick<AgentTunnel, 'deliverRecording'> | undefined
  log: Logger
  clock?: () => number
  maxWaitingBytes?: number
}

export class NodeRecordings {
  readonly uploader: RecordingUploader
  readonly #dir: string
  readonly #clock: () => number
  readonly #log: Logger
  readonly #maxWaitingBytes: number
  /** Each user's recordings this process made that are still on disk. */
  readonly #users = new Map<string, Held>()
  #offUntil = 0

  constructor(options: NodeRecordingsOptions) {
    this.#dir = nodeRecordingsDir(options.dataDir)
    this.#clock = options.clock ?? Date.now
    this.#log = options.log
    this.#maxWaitingBytes = options.maxWaitingBytes ?? MAX_WAITING_BYTES
    adoptOldOutbox(options.dataDir, this.#dir, this.#log)
    finishInterrupted(this.#dir)
    this.uploader = new RecordingUploader({
      dir: this.#dir,
      transport: () => transport(options),
      refused: (error) => error instanceof AuditRefused || (error instanceof ApiError && [400, 403, 413].includes(error.status)),
      policy: (recording) => (this.#offUntil = recording === 'off' ? this.#clock() + OFF_HOLDS_MS : 0),
      log: options.log,
    })
    // Recordings finished before a restart go out as soon as there is a way.
    this.uploader.kick()
  }

  /**
   * Where `user`'s interactive session `name` (a session ID) is recorded, with the room the
   * user's recordings have left; why it is not, when too much waits; undefined while the
   * cluster does not record. Recordings made before a restart count against the whole bound
   * only: whose they are is not known.
   */
  place(user: string, name: string): RecordingPlace | undefined {
    if (this.#clock() < this.#offUntil) return undefined
    const share = Math.floor(this.#maxWaitingBytes / USER_SHARES)
    const held = this.#held(user)
    if (held.bytes >= share || held.full) {
      this.#log.warn(`session not recorded: ${user}'s recordings on this node hold ${held.bytes} bytes, their share`, { user, session_id: name, held_bytes: held.bytes })
      return {
        skipped: { code: 'user_share', reason: `the user's recordings being written or waiting on this node hold ${held.bytes} bytes, their share (${share}) of what may wait` },
      }
    }
    const waiting = waitingBytes(this.#dir)
    if (waiting >= this.#maxWaitingBytes) {
      this.#log.warn(`session not recorded: ${waiting} bytes of recordings wait for the auth server already`, { user, session_id: name, waiting_bytes: waiting })
      return { skipped: { code: 'node_full', reason: `${waiting} bytes of recordings wait on this node for the auth server already (at most ${this.#maxWaitingBytes})` } }
    }
    const path = join(this.#dir, `${name}.cast`)
    held.recordings.set(path, 0)
    this.#users.set(user, held)
    const room = (bytes: number): boolean => {
      if (held.bytes + bytes > share) {
        held.full = true
        return false
      }
      held.bytes += bytes
      held.recordings.set(path, (held.recordings.get(path) ?? 0) + bytes)
      return true
    }
    return { dir: this.#dir, room }
  }

  /** What `user`'s recordings hold now: those uploaded (their files gone) no longer count. */
  #held(user: string): Held {
    const held = this.#users.get(user) ?? { bytes: 0, full: false, recordings: new Map<string, number>() }
    for (const [path, bytes] of held.recordings) {
      if (existsSync(path) || existsSync(`${path}.part`)) continue
      held.recordings.delete(path)
      held.bytes -= bytes
      held.full = false
    }
    if (held.recordings.size === 0) this.#users.delete(user)
    return held
  }

  stop(): void {
    this.uploader.stop()
  }
}

function transport(options: NodeRecordingsOptions): RecordingTransport | undefined {
  const direct = options.direct()
  if (direct) {
    return async (chunk: RecordingChunkIn) => {
      const { ApiClient } = await import('../shared/api-client.ts')
      const client = new ApiClient({ server: direct.server, caPems: direct.caPems, certPem: direct.certPem, keyPem: direct.keyPem })
      try {
        return await client.call('POST /v1/recordings/chunks', { body: chunk })
      } finally {
        await client.close()
      }
    }
  }
  const tunnel = options.tunnel()
  return tunnel && ((chunk) => tunnel.deliverRecording(chunk))
}

/**
 * Before node-recordings/ the outbox was `<data_dir>/recordings`, the auth store's default
 * folder. Its recordings (finished, or cut short by a stop) move into the outbox to be
 * uploaded, unless the folder holds an `<id>.json`: the auth store writes one beside every
 * recording it keeps and the node never wrote any, so an auth server's folder (of this
 * process or another) is left alone. The folder itself stays: a store may be using it.
 */
function adoptOldOutbox(dataDir: string, outbox: string, log: Logger): void {
  const old = join(dataDir, 'recordings')
  try {
    if (!existsSync(old)) return
    const names = readdirSync(old)
    if (names.some((name) => name.endsWith('.json'))) return
    const moving = names.filter((name) => name.endsWith('.cast') || name.endsWith('.cast.part'))
    if (moving.length === 0) return
    mkdirSync(outbox, { recursive: true, mode: 0o700 })
    // Renamed, so their times (the upload order) stay; a name the outbox holds already is never overwritten.
    for (const name of moving) if (!existsSync(join(outbox, name))) renameSync(join(old, name), join(outbox, name))
    log.info(`${moving.length} session recordings waiting from before the upgrade moved from ${old} to ${outbox}`, { recordings: moving.length })
  } catch (error) {
    log.warn(`session recordings in ${old} not moved to ${outbox}: ${(error as Error).message}`)
  }
}

function waitingBytes(dir: string): number {
  if (!existsSync(dir)) return 0
  return readdirSync(dir).reduce((sum, name) => {
    try {
      return sum + statSync(join(dir, name)).size
    } catch {
      return sum // uploaded and removed while we looked
    }
  }, 0)
}
