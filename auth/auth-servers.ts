// Auth servers sharing an etcd backend answer one cluster, so each looks at the others: do they
// keep recordings in the same folder (auth/recording-dir-check.ts), and which label keys do
// they keep for assignments (auth/assigned-label-keys.ts)? Each records itself in the
// backend, under a TTL it refreshes every few seconds, and reads the others' records: one
// write and one list per look, whatever looks at them. A server that stops removes its
// record; one that is killed leaves the live set once its TTL runs out.

import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Backend } from './backend/backend.ts'

/** The live auth servers, each an item with a TTL. */
const PREFIX = '/auth-servers/'
const SERVER_ID = /^[0-9a-f]{16}$/
/** How often each server refreshes its record and reads its peers'. */
export const LOOK_INTERVAL_MS = 5000
/** A server killed leaves the live set after this (four looks missed). */
const SERVER_TTL_MS = 4 * LOOK_INTERVAL_MS

/** What an auth server records of itself. */
export interface AuthServerRecord {
  id: string
  /** Where it serves the auth API ('' before it listens). */
  address: string
  hostname: string
  /** Its `auth_service.recording_dir`; absent when it records no sessions. */
  recording_dir?: string
  /** Its `auth_service.assigned_label_keys`; absent from a server of a version that kept them elsewhere. */
  assigned_label_keys?: string[]
}

/** Something that looks at the other auth servers; a failure of one watcher leaves the others' looks alone. */
export interface AuthServerWatcher {
  /** Before this server's record is written, at each look. */
  beforeRecord?(): void
  /** The other live servers' records, at each look. */
  seen(peers: AuthServerRecord[]): Promise<void> | void
  /** This look failed for this watcher: the backend did not answer, or its own part threw. */
  failed(error: Error): void
  /** At stop, once this server's record is gone. */
  afterRemove?(): void
}

export interface AuthServersOptions {
  backend: Backend
  address: () => string
  recordingDir?: string
  assignedLabelKeys: readonly string[]
}

export class AuthServers {
  readonly id = randomBytes(8).toString('hex')
  readonly #options: AuthServersOptions
  /** This server's assigned_label_keys as it records them: once each, sorted. */
  readonly #keys: string[]
  readonly #watchers: AuthServerWatcher[] = []
  #timer?: NodeJS.Timeout
  #running?: Promise<void>

  constructor(options: AuthServersOptions) {
    this.#options = options
    this.#keys = [...new Set(options.assignedLabelKeys)].sort()
  }

  watch(watcher: AuthServerWatcher): void {
    this.#watchers.push(watcher)
  }

  /** Records this server and reads the others' records once; then every few seconds. */
  async start(): Promise<void> {
    await this.look()
    this.#timer = setInterval(() => void this.look(), LOOK_INTERVAL_MS)
    this.#timer.unref()
  }

  /** One look (never two at once). */
  look(): Promise<void> {
    this.#running ??= this.#look().finally(() => (this.#running = undefined))
    return this.#running
  }

  /** Whether the server with this ID still has its record (it removes it first when it stops). */
  async isLive(id: string): Promise<boolean> {
    return (await this.#options.backend.get(PREFIX + id)) !== undefined
  }

  async #look(): Promise<void> {
    const { backend } = this.#options
    const ready = this.#watchers.filter((watcher) => this.#guarded(watcher, () => watcher.beforeRecord?.()))
    let peers: AuthServerRecord[]
    try {
      await backend.put(PREFIX + this.id, JSON.stringify(this.#record()), { ttlMs: SERVER_TTL_MS })
      peers = (await backend.list(PREFIX)).flatMap((item) => recordOf(item.value)).filter((peer) => peer.id !== this.id)
    } catch (error) {
      for (const watcher of ready) watcher.failed(error as Error)
      return
    }
    for (const watcher of ready) {
      try {
        await watcher.seen(peers)
      } catch (error) {
        watcher.failed(error as Error)
      }
    }
  }

  #guarded(watcher: AuthServerWatcher, part: () => void): boolean {
    try {
      part()
      return true
    } catch (error) {
      watcher.failed(error as Error)
      return false
    }
  }

  #record(): AuthServerRecord {
    const { recordingDir } = this.#options
    return {
      id: this.id,
      address: this.#options.address(),
      hostname: hostname(),
      ...(recordingDir === undefined ? {} : { recording_dir: recordingDir }),
      assigned_label_keys: this.#keys,
    }
  }

  /** Its record goes first, so that the others stop counting it at their next look. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#running
    await this.#options.backend.delete(PREFIX + this.id).catch(() => false)
    for (const watcher of this.#watchers) this.#guarded(watcher, () => watcher.afterRemove?.())
  }
}

/** A peer's record; none for an item that is not one. */
function recordOf(value: string): AuthServerRecord[] {
  try {
    const parsed = JSON.parse(value) as Partial<AuthServerRecord>
    if (typeof parsed.id !== 'string' || !SERVER_ID.test(parsed.id)) return []
    const keys = parsed.assigned_label_keys
    const validKeys = Array.isArray(keys) && keys.every((key) => typeof key === 'string')
    return [
      {
        id: parsed.id,
        address: String(parsed.address ?? ''),
        hostname: String(parsed.hostname ?? ''),
        ...(typeof parsed.recording_dir === 'string' ? { recording_dir: parsed.recording_dir } : {}),
        ...(validKeys ? { assigned_label_keys: [...new Set(keys)].sort() } : {}),
      },
    ]
  } catch {
    return []
  }
}
