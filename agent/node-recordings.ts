// The node's session recordings: where the SSH server writes them, and the uploader that
// takes them to the auth server, through a tunnel's proxy or straight for a direct node.
// The cluster's `auth_service.recording` comes back with each upload's answer: at `off`
// the node records nothing for an hour, then records the next session to hear it again.

import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { ApiError } from '../shared/errors.ts'
import type { Logger } from '../shared/log.ts'
import type { RecordingChunkIn } from '../shared/protocol/recordings.ts'
import { type RecordingTransport, RecordingUploader } from './recording-uploader.ts'
import { finishInterrupted } from './session-recording.ts'
import { type AgentTunnel, AuditRefused } from './tunnel.ts'

/** How long an `off` heard from the auth server holds before the node asks again. */
const OFF_HOLDS_MS = 3600_000
/**
 * At most this much of recordings waits for the auth server; beyond it, new sessions are not
 * recorded until uploads make room. A device that cannot reach the cluster for long keeps
 * its storage (four sessions at the 16 MiB cap, or days of ordinary shells).
 */
export const MAX_WAITING_BYTES = 64 * 1024 * 1024

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
  #offUntil = 0

  constructor(options: NodeRecordingsOptions) {
    this.#dir = join(options.dataDir, 'recordings')
    this.#clock = options.clock ?? Date.now
    this.#log = options.log
    this.#maxWaitingBytes = options.maxWaitingBytes ?? MAX_WAITING_BYTES
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

  /** Where the next interactive session is recorded, or undefined while the cluster does not record or too much waits. */
  dir(): string | undefined {
    if (this.#clock() < this.#offUntil) return undefined
    const waiting = waitingBytes(this.#dir)
    if (waiting >= this.#maxWaitingBytes) {
      this.#log.warn(`session not recorded: ${waiting} bytes of recordings wait for the auth server already`, { waiting_bytes: waiting })
      return undefined
    }
    return this.#dir
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
