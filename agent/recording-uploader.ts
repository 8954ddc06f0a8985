// Uploads finished session recordings (session-recording.ts) to the auth server, oldest
// first, in chunks addressed by offset: through a tunnel's proxy, or straight to the auth
// server for a direct node, as the audit events go. The auth server answers each chunk with
// how much of the recording it holds, and the next chunk starts there; so a chunk sent twice
// is stored once, and after a lost answer, a disconnect or a restart the upload continues
// where the auth server's copy ends. A file leaves the node once the auth server says it is
// whole. Failures are retried after a backoff with jitter, and no sooner than a refusal's
// Retry-After asks, like audit events.

import { closeSync, existsSync, openSync, readdirSync, readSync, statSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { serverWaitMs } from '../shared/backoff.ts'
import type { Logger } from '../shared/log.ts'
import { RECORDING_CHUNK_BYTES, type RecordingChunkIn, type RecordingStored } from '../shared/protocol/recordings.ts'
import { RetryingDrain, type SetTimer } from './retrying-drain.ts'

export type RecordingTransport = (chunk: RecordingChunkIn) => Promise<RecordingStored>

export interface RecordingUploaderOptions {
  dir: string
  /** How a chunk goes now (tunnel or direct mode), undefined while there is no way. */
  transport: () => RecordingTransport | undefined
  /** Whether an error means the auth server will refuse this recording however often it is sent. */
  refused: (error: unknown) => boolean
  /** Told the cluster's `auth_service.recording` from each answer. */
  policy: (recording: RecordingStored['recording']) => void
  log: Logger
  /** How retries are timed; tests inject both. */
  clock?: () => number
  setTimer?: SetTimer
}

// From a second up to a quarter of a minute: a proxy or auth server back from a restart gets
// the recordings soon, from a fleet spread over that window.
const RETRY_BASE_MS = 1000
const RETRY_CAP_MS = 15_000

export class RecordingUploader {
  readonly #options: RecordingUploaderOptions
  readonly #drain: RetryingDrain
  #failing = false
  /** How much of each recording the auth server last said it holds: a retry starts there. */
  readonly #held = new Map<string, number>()

  constructor(options: RecordingUploaderOptions) {
    this.#options = options
    this.#drain = new RetryingDrain(() => this.#uploadWaiting(), { baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS, clock: options.clock, setTimer: options.setTimer })
  }

  /** Uploads what is waiting now (a session just ended, or a way to the auth server opened). */
  kick(): void {
    this.#drain.kick()
  }

  stop(): void {
    this.#drain.stop()
  }

  /** Every finished recording, oldest first; false when the rest must wait for a retry. */
  async #uploadWaiting(): Promise<boolean> {
    for (const name of waiting(this.#options.dir)) {
      if (this.#drain.stopped) return true
      if (!(await this.#upload(join(this.#options.dir, name), name.slice(0, -'.cast'.length)))) return false
    }
    return true
  }

  /** Sends one recording until the auth server holds it whole; false when it must wait for a retry. */
  async #upload(path: string, sessionId: string): Promise<boolean> {
    const { log } = this.#options
    const size = statSync(path).size
    // After a restart nothing is known: the first answer says where the auth server's copy ends.
    let offset = Math.min(this.#held.get(sessionId) ?? 0, size)
    for (;;) {
      const send = this.#options.transport()
      if (!send) return false
      const data = readAt(path, offset, RECORDING_CHUNK_BYTES)
      const chunk = { session_id: sessionId, offset, data: data.toString('base64'), end: offset + data.length >= size }
      let stored: RecordingStored
      try {
        stored = await send(chunk)
      } catch (error) {
        if (this.#options.refused(error)) {
          log.error(`the auth server refused session recording ${sessionId}; it is dropped: ${(error as Error).message}`, { session_id: sessionId })
          unlinkSync(path)
          this.#held.delete(sessionId)
          return true
        }
        if (!this.#failing) log.warn(`session recording not uploaded, retrying: ${(error as Error).message}`, { session_id: sessionId })
        this.#failing = true
        // Over its quota for now (429): kept, and sent again no sooner than the auth server asked.
        const wait = serverWaitMs(error)
        if (wait !== undefined) this.#drain.waitAtLeast(wait)
        return false
      }
      this.#options.policy(stored.recording)
      this.#drain.delivered()
      this.#failing = false
      if (stored.complete) {
        unlinkSync(path)
        this.#held.delete(sessionId)
        log.debug('session recording uploaded', { session_id: sessionId, bytes: size })
        return true
      }
      // The auth server's copy ends there: what it has is not sent again, a gap is filled first.
      if (stored.length === offset && !chunk.end) return false
      offset = Math.min(stored.length, size)
      this.#held.set(sessionId, offset)
      if (chunk.end && stored.length >= size) return false // it has the bytes but not the end: a retry says it again
    }
  }
}

/** Finished recordings, oldest first. */
function waiting(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((name) => name.endsWith('.cast'))
    .map((name) => ({ name, mtime: statSync(join(dir, name)).mtimeMs }))
    .sort((a, b) => a.mtime - b.mtime)
    .map(({ name }) => name)
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r')
  try {
    const buffer = Buffer.alloc(length)
    const read = readSync(fd, buffer, 0, length, offset)
    return buffer.subarray(0, read)
  } finally {
    closeSync(fd)
  }
}
